"""The `facekp` entry point: global options, verb discovery and the one place errors become exit codes."""

from __future__ import annotations

import errno
import logging
import os
import sys
import traceback
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import typer
from typer._click import exceptions as click_exceptions
from typer.core import TyperGroup

from facekp_cli import __version__
from facekp_cli.cli import shell_completion
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

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        # Here, not in __init__: Typer appends the completion and help options later.
        _defer_value_coercion(self, ctx, root=True)
        args = hoist_global_options(args)
        try:
            return super().parse_args(ctx, shell_completion.default_shell_values(args, self.commands))
        except click_exceptions.UsageError as exc:
            raise OneLineUsageError.of(exc, ctx) from None

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click_exceptions.UsageError as exc:  # a verb's bad flag or value (exit 2)
            if isinstance(exc, OneLineUsageError):
                raise
            raise OneLineUsageError.of(exc, ctx) from None
        except FacekpError as exc:
            _report(ctx, exc)
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            echo_err("facekp: interrupted")
            ctx.exit(int(ExitCode.INTERRUPTED))
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
            # a limit of the file system that no verb can check for every path it derives
            from facekp_cli.outputs import name_too_long

            _report(ctx, name_too_long(exc.filename or "a path"))
            ctx.exit(int(ExitCode.USAGE))

    def list_commands(self, ctx: typer.Context) -> list[str]:
        # Built-ins in workflow order (_BUILTIN_ORDER), then plugins by name.
        order = {name: i for i, name in enumerate(_BUILTIN_ORDER)}
        return sorted(self.commands, key=lambda name: (order.get(name, len(order)), name))


class OneLineUsageError(click_exceptions.UsageError):
    """Usage errors in one line like every other facekp error, with the help hint on it.

    Click prints four (usage, a 'Try --help' line, a blank, the error); scripts and logs
    grepping `facekp: error:` saw only the last.
    """

    @classmethod
    def of(cls, exc: click_exceptions.UsageError, ctx: typer.Context) -> OneLineUsageError:
        return cls(exc.format_message(), exc.ctx or ctx)

    def show(self, file: Any = None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        echo_err(f"facekp: error: {self.format_message()}{hint}")


# The root options, accepted after the verb too (`facekp train --set train.epochs=2`, `infer ... -q`):
# no verb defines these names, so moving them in front of the verb changes nothing else.
_GLOBAL_FLAGS = ("-v", "--verbose", "-q", "--quiet")
_GLOBAL_WITH_VALUE = ("-c", "--config", "-s", "--set", "--preset")


def hoist_global_options(args: list[str]) -> list[str]:
    """Move root options that follow the verb in front of it; `--` ends the search."""
    front: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":  # root options before the verb
        i += 2 if args[i] in _GLOBAL_WITH_VALUE else 1
    if i >= len(args):
        return list(args)
    head, rest, moved = list(args[:i]), [], []
    tail = list(args[i:])
    j = 0
    while j < len(tail):
        token = tail[j]
        if token == "--":
            rest.extend(tail[j:])
            break
        if token in _GLOBAL_FLAGS or (token.split("=", 1)[0] in _GLOBAL_WITH_VALUE and "=" in token):
            moved.append(token)
        elif token in _GLOBAL_WITH_VALUE and j + 1 < len(tail):
            moved += tail[j : j + 2]
            j += 1
        else:
            rest.append(token)
        j += 1
    front = head + moved
    return front + rest


class _CheapCoercion:
    """Typer coerces every parameter value through pydantic, whose import costs ~100 ms.

    On TAB completion (resilient parsing) values are not needed, and the root options are a
    plain path and plain strings; only a verb that really runs pays for pydantic.
    """

    def __init__(self, param: Any, root: bool) -> None:
        self.param, self.root, self.full = param, root, None

    def coerce(self, value: Any, param: Any, ctx: typer.Context) -> Any:
        multi = param.multiple or param.nargs == -1
        if value is None:
            return () if multi else None
        if ctx.resilient_parsing:
            return value
        if self.root:  # --config PATH and --set KEY=VALUE...
            if multi:
                return [str(item) for item in value]
            return Path(value) if self.param.type_descriptor.annotation in (Path, Path | None) else value
        if self.full is None:
            from typer._coercion import build_runtime_param

            self.full = build_runtime_param(self.param.type_descriptor)
        return self.full.coerce(value, param=param, ctx=ctx)


def _defer_value_coercion(command: Any, ctx: typer.Context, root: bool) -> None:
    # get_params includes the help option; the names it uses are the same in every sub-context.
    for param in command.get_params(ctx):
        if hasattr(param, "type_descriptor") and getattr(param, "_runtime_param", 0) is None:
            param._runtime_param = _CheapCoercion(param, root)
    for sub in getattr(command, "commands", {}).values():
        _defer_value_coercion(sub, ctx, root=False)


def _report(ctx: typer.Context, exc: FacekpError) -> None:
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
    add_completion=False,  # facekp_cli.cli.shell_completion adds options that also take the shell's name
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
        autocompletion=path_completer(".toml"),
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        envvar="FACEKP_PRESET",
        help="Start from a named set of settings: fast (CPUs, edge) or cpu (15 min on 2 cores).",
        autocompletion=lambda: ["fast", "cpu"],
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
    install_completion: str | None = typer.Option(
        None,
        "--install-completion",
        metavar="[bash|zsh|fish]",
        callback=shell_completion.install_completion,
        autocompletion=shell_completion.complete_shell,
        expose_value=False,
        is_eager=True,
        help="Install TAB completion for this shell (or the one named) and exit.",
        show_default=False,
    ),
    show_completion: str | None = typer.Option(
        None,
        "--show-completion",
        metavar="[bash|zsh|fish]",
        callback=shell_completion.show_completion,
        autocompletion=shell_completion.complete_shell,
        expose_value=False,
        is_eager=True,
        help="Print the completion script for this shell (or the one named) and exit.",
        show_default=False,
    ),
) -> None:
    """Facial keypoint detection: data, training, evaluation, export and inference."""
    cli = state(ctx)
    cli.config_path, cli.verbose, cli.quiet, cli.preset = config, verbose, quiet, preset
    cli.assignments = parse_assignments(assignments or [])
    configure_logging(verbose, quiet)
    from facekp_cli.model import resolve  # light: no torch until a model is loaded

    resolve.set_notice(None if quiet else echo_err)  # "which model answered", one stderr line


def _register_plugins(target: typer.Typer) -> None:
    """Add every verb declared in the entry-point group; a broken plugin is reported and skipped."""
    # Warnings on stderr would garble the prompt during TAB completion, so they wait for a real run.
    warn = echo_err if not any(name.endswith("_COMPLETE") for name in os.environ) else (lambda _: None)
    seen: dict[str, str] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=_builtin_first):
        if ep.name in seen:
            if ep.value != seen[ep.name]:
                warn(f"facekp: warning: plugin '{ep.name}' ({ep.value}) is taken by {seen[ep.name]}; skipped")
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # a plugin must never break --help
            warn(f"facekp: warning: plugin '{ep.name}' ({ep.value}) failed to load: {exc!r}; skipped")
            continue
        if isinstance(obj, typer.Typer) and _is_single_command(obj):
            # A verb app with only a callback is one command (`facekp train`), not a group.
            info = obj.registered_callback
            settings = info.context_settings if isinstance(info.context_settings, dict) else None
            help_text = obj.info.help if isinstance(obj.info.help, str) else None
            target.command(name=ep.name, help=help_text, context_settings=settings)(info.callback)
        elif isinstance(obj, typer.Typer):
            target.add_typer(obj, name=ep.name)
        elif callable(obj):
            target.command(name=ep.name)(obj)
        else:
            warn(f"facekp: warning: plugin '{ep.name}' is neither a Typer app nor a function; skipped")
            continue
        seen[ep.name] = ep.value


def _is_single_command(app_: typer.Typer) -> bool:
    no_children = not app_.registered_commands and not app_.registered_groups
    return no_children and app_.registered_callback is not None


# Every built-in verb (the first six in workflow order, then the later ones by name, as --help has
# always listed them): a plugin of the same name must never shadow one of them. tests/test_plugins.py
# keeps this list equal to pyproject.toml's entry points.
_BUILTIN_ORDER = (
    "data",
    "train",
    "infer",
    "eval",
    "export",
    "config",
    "align",
    "overlay",
    "tracking",
    "tune",
)


def _builtin_first(ep: Any) -> tuple[int, int, str]:
    builtin = ep.value.startswith("facekp_cli.") and ep.name in _BUILTIN_ORDER
    return (0, _BUILTIN_ORDER.index(ep.name), ep.name) if builtin else (1, 0, ep.name)


_register_plugins(app)


def main() -> None:
    # Standalone mode: Typer prints usage errors (exit 2) itself; FacekpGroup maps our errors.
    command = typer.main.get_command(app)
    command.main(args=sys.argv[1:], prog_name="facekp", standalone_mode=True)
