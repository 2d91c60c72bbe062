"""`facekp tune`: Optuna hyper-parameter search over real training runs; prints and writes the best."""

from __future__ import annotations

from pathlib import Path

import typer

from facekp_cli.cli.context import build_settings, make_console, quiet_lightning, state

app = typer.Typer(help="Search hyper-parameters with Optuna (MLflow child runs, pruning, resumable).")


@app.callback(invoke_without_command=True)
def tune(
    ctx: typer.Context,
    data: Path | None = typer.Option(None, "--data", help="Dataset folder [data.root]."),
    space: Path | None = typer.Option(
        None, "--space", help="Search space TOML [tune.space; default: the built-in space]."
    ),
    param: list[str] = typer.Option(
        [], "--param", help="Add or replace a dimension: KEY=LOW..HIGH[:log] or KEY=A,B,... (repeatable)."
    ),
    n_trials: int | None = typer.Option(None, "--n-trials", help="Trials to run now [tune.n_trials: 20]."),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Start no trial after this many seconds [tune.timeout_s]."
    ),
    study: str | None = typer.Option(None, "--study", help="Study name; reuse it to resume [tune.study]."),
    storage: str | None = typer.Option(
        None, "--storage", help="Optuna storage URL [tune.storage; default sqlite in train.out_dir]."
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs per trial [train.epochs]."),
    out: Path | None = typer.Option(
        None, "--out", help="Write the best parameters here as a conf.toml fragment [tune.out]."
    ),
    no_tracking: bool | None = typer.Option(None, "--no-tracking", help="Do not log to MLflow."),
) -> None:
    """Run trials of `facekp train` with sampled settings; keep the one with the lowest validation NME."""
    from facekp_cli.services import tune as service

    settings = build_settings(
        ctx,
        **{
            "data.root": data,
            "tune.space": space,
            "tune.n_trials": n_trials,
            "tune.timeout_s": timeout,
            "tune.study": study,
            "tune.storage": storage,
            "tune.out": out,
            "train.epochs": epochs,
            "tracking.enabled": False if no_tracking else None,
        },
    )
    quiet_lightning(state(ctx).verbose)
    from facekp_cli.cli.progress import epoch_lines_callback, progress_stream, say

    stream = progress_stream(ctx)
    trial_callbacks = on_trial = None
    if stream is not None:  # a log file or pipe: a line per epoch of each trial, one per trial
        total = settings.tune.n_trials

        def trial_callbacks(number: int) -> list:
            return [epoch_lines_callback(stream, "tune", prefix=f"trial {number}: ")]

        def on_trial(trial) -> None:
            value = "" if trial.value is None else f", val NME {trial.value:.3f}%"
            say(stream, "tune", f"trial {trial.number} {trial.state.lower()}{value} ({total} trials asked)")

    result = service.run(settings, param, trial_callbacks=trial_callbacks, on_trial=on_trial)
    _render(ctx, result)


def _render(ctx: typer.Context, result) -> None:
    from rich.table import Table

    console = make_console(ctx)
    console.print(
        f"Study '{result.study}': {result.ran} trial(s) run now, {len(result.trials)} in all, "
        f"{result.seconds:.0f} s ({result.storage})",
        soft_wrap=True,
        markup=False,
    )
    table = Table()
    keys = sorted({k for t in result.trials for k in t.params})
    for column in ("trial", "state", "val NME %", *keys):
        table.add_column(column, justify="left" if column == "state" else "right")
    for trial in result.trials:
        value = "" if trial.value is None else f"{trial.value:.3f}"
        row = [_fmt(trial.params.get(k)) for k in keys]
        table.add_row(str(trial.number), trial.state.lower(), value, *row)
    console.print(table)
    if result.best is None:
        console.print("No trial completed.")
        return
    console.print(
        f"Best: trial {result.best.number}, val NME {result.best.value:.3f} %; written to {result.fragment} "
        f"(use: facekp --config {result.fragment} train)",
        soft_wrap=True,
        markup=False,
    )
    if result.parent_run_id:
        console.print(f"MLflow parent run: {result.parent_run_id}", soft_wrap=True, markup=False)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
