"""`--install-completion [SHELL]` and `--show-completion [SHELL]` for bash, zsh and fish.

Typer's own options only detect the running shell; these also take the shell by name (for a
shell other than the current one, a Dockerfile or a CI image). The scripts and the completion
protocol are Typer's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import typer
from typer import completion as typer_completion

SHELLS = ("bash", "zsh", "fish")
AUTO = "auto"

# Registers Typer's bash/zsh/fish completion classes (Typer does this only for its own options).
typer_completion.completion_init()


OPTIONS = ("--install-completion", "--show-completion")
_ROOT_OPTIONS_WITH_VALUES = ("-c", "--config", "-s", "--set")


def default_shell_values(args: list[str], verbs: Iterable[str]) -> list[str]:
    """Make the shell name optional: `--show-completion` alone means the running shell.

    Typer's options cannot have an optional value, so a missing one is filled in here: when
    the option is last, or followed by another option or a verb.
    """
    out = list(args)
    i = 0
    while i < len(out):
        token = out[i]
        following = out[i + 1] if i + 1 < len(out) else None
        if token in OPTIONS and (following is None or following.startswith("-") or following in verbs):
            out.insert(i + 1, AUTO)
        elif token in _ROOT_OPTIONS_WITH_VALUES:
            i += 1
        elif not token.startswith("-"):
            break  # the verb: everything after it belongs to the verb
        i += 1
    return out


def _shell(value: str) -> str:
    shell = value
    if value == AUTO:
        from typer._completion_shared import _get_shell_name

        shell = _get_shell_name() or ""
    if shell not in SHELLS:
        detected = f"detected '{shell}'" if value == AUTO and shell else f"got '{value}'"
        raise typer.BadParameter(f"{detected}; name one of {', '.join(SHELLS)}")
    return shell


def show_completion(ctx: typer.Context, param: Any, value: str | None) -> None:
    if not value or ctx.resilient_parsing:
        return
    script = typer_completion.get_completion_script(
        prog_name="facekp", complete_var="_FACEKP_COMPLETE", shell=_shell(value)
    )
    typer.echo(script)
    raise typer.Exit(0)


def install_completion(ctx: typer.Context, param: Any, value: str | None) -> None:
    if not value or ctx.resilient_parsing:
        return
    shell, path = typer_completion.install(
        shell=_shell(value), prog_name="facekp", complete_var="_FACEKP_COMPLETE"
    )
    typer.echo(f"{shell} completion installed in {path}; it takes effect in a new shell.")
    raise typer.Exit(0)


def complete_shell(incomplete: str) -> list[str]:
    return [shell for shell in SHELLS if shell.startswith(incomplete)]
