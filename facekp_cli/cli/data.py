"""`facekp data ...`: dataset synthesis, import, validation, preview and DVC versioning."""

from __future__ import annotations

import typer

app = typer.Typer(help="Make, import, check, preview and version the dataset (DVC).", no_args_is_help=True)
