"""`facekp config`: the resolved settings, where each value came from, and the valid keys."""

from __future__ import annotations

import json
from typing import Literal

import typer

from facekp_cli.cli.context import build_settings, make_console

app = typer.Typer(help="Show the resolved settings and where each value came from.", no_args_is_help=True)


def complete_key(incomplete: str) -> list[str]:
    """Sections and section.key names; settings (pydantic) is imported only when completing this."""
    from facekp_cli.settings import valid_keys

    keys = valid_keys()
    sections = list(dict.fromkeys(key.split(".")[0] for key in keys))
    return [name for name in [*sections, *keys] if name.startswith(incomplete)]


@app.command("show")
def show(
    ctx: typer.Context,
    names: list[str] | None = typer.Argument(
        None,
        metavar="KEY|SECTION",
        help="Show only these keys or sections (e.g. train, train.epochs).",
        autocompletion=complete_key,
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    source: Literal["default", "preset", "file", "env", "flag"] | None = typer.Option(
        None, "--source", help="Show only values from this layer, e.g. what the environment overrides."
    ),
) -> None:
    """Print every setting with its value and source (default, preset:NAME, file, env, flag)."""
    import difflib

    from facekp_cli.errors import UsageError

    settings = build_settings(ctx)
    flat, sources = settings.flat(), settings.sources
    wanted = [key for key in flat if not names or key in names or key.split(".")[0] in names]
    if source:
        wanted = [key for key in wanted if sources[key].split(":")[0] == source]
    for name in names or []:
        if name not in flat and not any(key.startswith(f"{name}.") for key in flat):
            close = difflib.get_close_matches(name, complete_key(""), n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else "see 'facekp config keys'"
            raise UsageError(f"unknown settings key or section '{name}'", hint=hint)
    if as_json:
        nested: dict[str, dict] = {}
        for key in wanted:
            section, _, name = key.partition(".")
            nested.setdefault(section, {})[name] = flat[key]
        payload = {
            "config_file": str(settings.config_path) if settings.config_path else None,
            "settings": nested,
            "sources": {key: sources[key] for key in wanted},
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"facekp settings (config file: {settings.config_path or 'none'})")
    for column in ("key", "value", "source"):
        table.add_column(column)
    for key in wanted:
        table.add_row(key, json.dumps(flat[key]), sources[key])
    make_console(ctx).print(table)


@app.command("keys")
def keys() -> None:
    """List every valid settings key."""
    from facekp_cli.settings import valid_keys

    typer.echo("\n".join(valid_keys()))
