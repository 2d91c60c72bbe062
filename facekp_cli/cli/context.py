"""Per-invocation state shared by the verbs: global flags and the settings builder."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from facekp_cli.settings import Settings


@dataclass
class CliState:
    config_path: Path | None = None
    verbose: bool = False
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def build_settings(ctx: typer.Context, **flags: Any) -> Settings:
    """Settings for this run; flags are {"section.key": value} and None means 'not given'."""
    from facekp_cli.settings import load_settings

    return load_settings(state(ctx).config_path, overrides=flags)


def configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("facekp_cli").setLevel(level)


def echo_err(message: str) -> None:
    typer.echo(message, err=True)


def make_console(ctx: typer.Context, stderr: bool = False):
    """A rich Console (imported lazily: rich costs start-up time)."""
    from rich.console import Console

    return Console(stderr=stderr, quiet=state(ctx).quiet and not stderr, highlight=False)
