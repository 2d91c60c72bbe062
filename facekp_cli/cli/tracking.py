"""`facekp tracking`: what a dead MLflow server missed, sent once it is back."""

from __future__ import annotations

import typer

from facekp_cli.cli.context import build_settings, echo_err, make_console
from facekp_cli.errors import ExitCode

app = typer.Typer(help="MLflow tracking kept locally while the server did not answer.", no_args_is_help=True)


@app.command("sync")
def sync(
    ctx: typer.Context,
    uri: str | None = typer.Option(
        None, "--uri", help="Send to this server instead of the one each journal was meant for."
    ),
) -> None:
    """Send the kept calls (metrics, params, artifacts, run status, registrations) to MLflow."""
    from facekp_cli.services import tracking_sync as service

    settings = build_settings(ctx)
    result = service.run(settings, uri)
    console = make_console(ctx)
    if not result.journals:
        console.print(f"nothing to send: no journals in {result.folder}")
        return
    for journal in result.journals:
        for line in journal.skipped:
            echo_err(f"facekp: warning: {line}; skipped")
        if journal.error is None:
            kept = (
                f" (damaged lines kept in {journal.path.with_suffix('.skipped')})" if journal.skipped else ""
            )
            console.print(
                f"sent {journal.calls} calls from {journal.path}{kept}", soft_wrap=True, markup=False
            )
        else:
            echo_err(f"facekp: error: {journal.error}")
    if not result.complete:
        raise typer.Exit(int(ExitCode.EXTERNAL))
    if result.skipped:  # everything readable was sent, but not everything was readable
        raise typer.Exit(int(ExitCode.PARTIAL))
