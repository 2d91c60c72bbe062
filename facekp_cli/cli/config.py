"""`facekp config show`: the resolved settings and where each value came from."""

from __future__ import annotations

import json

import typer

from facekp_cli.cli.context import build_settings, make_console

app = typer.Typer(help="Show the resolved settings and where each value came from.", no_args_is_help=True)


@app.command("show")
def show(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Print every setting with its value and source (default, file, env, flag)."""
    settings = build_settings(ctx)
    flat, sources = settings.flat(), settings.sources
    if as_json:
        payload = {
            "config_file": str(settings.config_path) if settings.config_path else None,
            "settings": settings.to_dict(),
            "sources": sources,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"facekp settings (config file: {settings.config_path or 'none'})")
    for column in ("key", "value", "source"):
        table.add_column(column)
    for key, value in flat.items():
        table.add_row(key, json.dumps(value), sources[key])
    make_console(ctx).print(table)


@app.command("keys")
def keys() -> None:
    """List every valid settings key."""
    from facekp_cli.settings import valid_keys

    typer.echo("\n".join(valid_keys()))
