"""`facekp export` (filled in by its own issue)."""

from __future__ import annotations

import typer

from facekp_cli.errors import NotImplementedYet

app = typer.Typer(help="export (not implemented yet).")


@app.callback(invoke_without_command=True)
def export() -> None:
    """Not implemented yet."""
    raise NotImplementedYet("'facekp export' is not implemented yet")
