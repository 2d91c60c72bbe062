"""`facekp train` (filled in by its own issue)."""

from __future__ import annotations

import typer

from facekp_cli.errors import NotImplementedYet

app = typer.Typer(help="train (not implemented yet).")


@app.callback(invoke_without_command=True)
def train() -> None:
    """Not implemented yet."""
    raise NotImplementedYet("'facekp train' is not implemented yet")
