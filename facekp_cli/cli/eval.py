"""`facekp eval` (filled in by its own issue)."""

from __future__ import annotations

import typer

from facekp_cli.errors import NotImplementedYet

app = typer.Typer(help="eval (not implemented yet).")


@app.callback(invoke_without_command=True)
def eval() -> None:
    """Not implemented yet."""
    raise NotImplementedYet("'facekp eval' is not implemented yet")
