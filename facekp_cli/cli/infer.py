"""`facekp infer` (filled in by its own issue)."""

from __future__ import annotations

import typer

from facekp_cli.errors import NotImplementedYet

app = typer.Typer(help="infer (not implemented yet).")


@app.callback(invoke_without_command=True)
def infer() -> None:
    """Not implemented yet."""
    raise NotImplementedYet("'facekp infer' is not implemented yet")
