"""The `facekp` entry point: global options, verb discovery and the one place errors become exit codes."""

from __future__ import annotations

import logging
import sys
import traceback
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperGroup

from facekp_cli import __version__
from facekp_cli.cli.context import (
    CliState,
    complete_assignment,
    configure_logging,
    echo_err,
    parse_assignments,
    path_completer,
    state,
)
from facekp_cli.errors import ExitCode, FacekpError

ENTRY_POINT_GROUP = "facekp.commands"
log = logging.getLogger(__name__)


class FacekpGroup(TyperGroup):
    """Maps FacekpError and Ctrl-C to one-line messages and exit codes, also under CliRunner."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FacekpError as exc:
            _report(ctx, exc)
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            echo_err("facekp: interrupted")
            ctx.exit(int(ExitCode.INTERRUPTED))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # registration order: data, train, infer, eval, export, config


def _report(ctx: click.Context, exc: FacekpError) -> None:
    obj = ctx.find_root().obj
    if isinstance(obj, CliState) and obj.verbose:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    echo_err(f"facekp: error: {exc}")


app = typer.Typer(
    name="facekp",
    cls=FacekpGroup,
    help="Facial keypoint detection: data, training, evaluation, export and inference.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help keeps `facekp --help` and TAB completion fast
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"facekp {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        envvar="FACEKP_CONFIG",
        help="Settings file (default: ./conf.toml if present).",
        dir_okay=False,
        autocompletion=path_completer(".toml"),
    ),
    assignments: list[str] | None = typer.Option(
        None,
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override one setting, e.g. --set train.epochs=5 (repeatable; a verb's own flags win).",
        autocompletion=complete_assignment,
        show_default=False,
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logs and tracebacks."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors; no progress bars."),
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Facial keypoint detection: data, training, evaluation, export and inference."""
    cli = state(ctx)
    cli.config_path, cli.verbose, cli.quiet = config, verbose, quiet
    cli.assignments = parse_assignments(assignments or [])
    configure_logging(verbose, quiet)


def _register_plugins(target: typer.Typer) -> None:
    """Add every verb declared in the entry-point group; a broken plugin is reported and skipped."""
    seen: set[str] = set()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=_builtin_first):
        if ep.name in seen:
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # a plugin must never break --help
            echo_err(f"facekp: warning: plugin '{ep.name}' ({ep.value}) failed to load: {exc!r}; skipped")
            continue
        seen.add(ep.name)
        if isinstance(obj, typer.Typer):
            target.add_typer(obj, name=ep.name)
        elif callable(obj):
            target.command(name=ep.name)(obj)
        else:
            echo_err(f"facekp: warning: plugin '{ep.name}' is neither a Typer app nor a function; skipped")


_BUILTIN_ORDER = ("data", "train", "infer", "eval", "export", "config")


def _builtin_first(ep: Any) -> tuple[int, int, str]:
    builtin = ep.value.startswith("facekp_cli.") and ep.name in _BUILTIN_ORDER
    return (0, _BUILTIN_ORDER.index(ep.name), ep.name) if builtin else (1, 0, ep.name)


_register_plugins(app)


def main() -> None:
    command = typer.main.get_command(app)
    try:
        code = command.main(args=sys.argv[1:], prog_name="facekp", standalone_mode=False)
    except click.exceptions.Abort:
        echo_err("facekp: interrupted")
        code = ExitCode.INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    sys.exit(int(code) if isinstance(code, int) else 0)
