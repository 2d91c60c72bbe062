"""`python -m facekp_cli` = the `facekp` command (for scripts that run this checkout's code)."""

from facekp_cli.cli.main import main

if __name__ == "__main__":
    main()
