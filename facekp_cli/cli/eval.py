"""`facekp eval`: MSE100, NME, PCK, AUC and FR for a checkpoint or a predictions file, beside the
mean-shape baseline."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from facekp_cli.cli.context import build_settings, ckpt_option, echo_err, make_console, model_option

app = typer.Typer(help="Score a checkpoint on a labelled split, or a predictions file against gt.csv.")


@app.callback(invoke_without_command=True)
def evaluate(
    ctx: typer.Context,
    ckpt: Path | None = ckpt_option(
        "Checkpoint to score (default: train.best_path, else the shipped model)."
    ),
    model: Path | None = model_option(),
    data: Path | None = typer.Option(
        None, "--data", help="Labelled split or dataset root (default: data.root/test)."
    ),
    pred: Path | None = typer.Option(
        None, "--pred", help="Predictions to score (gt.csv format or infer JSON)."
    ),
    gt: Path | None = typer.Option(None, "--gt", help="Labels for --pred (default: data.root/test/gt.csv)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the JSON report here (atomically)."),
    metrics_out: Path | None = typer.Option(
        None, "--metrics", help="Also write the headline numbers as flat JSON (for dvc metrics)."
    ),
    plots: Path | None = typer.Option(
        None, "--plots", help="Folder for the CED, per-point and worst-image PNGs."
    ),
    mlflow_run: str | None = typer.Option(
        None, "--mlflow-run", help="Log into this MLflow run (default: the checkpoint's run)."
    ),
    worst: int | None = typer.Option(
        None, "--worst", min=0, help="Worst images to list and draw (eval.worst_n)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of a table."),
) -> None:
    """Evaluate; numbers are in docs/DESIGN.md's definitions (NME in % of the outer-eye-corner distance)."""
    from facekp_cli.cli.progress import LoopProgress
    from facekp_cli.services import evaluate as service

    settings = build_settings(ctx, **{"eval.worst_n": worst})
    progress = LoopProgress(ctx, "eval", stdout_is_data=as_json)
    try:
        result = service.run(
            settings,
            ckpt=ckpt,
            model=model,
            data=data,
            pred=pred,
            gt=gt,
            out=out,
            plots_dir=plots,
            mlflow_run=mlflow_run,
            metrics_out=metrics_out,
            on_start=progress.start,
            on_image=lambda _result: progress.advance(),
        )
    finally:
        progress.stop()
    for note in result.notes:
        echo_err(f"facekp: warning: {note}")
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    _render(make_console(ctx), result)


def _render(console, result) -> None:
    from rich.table import Table

    model, base = result.metrics, result.baseline
    what = result.source.get("path", "?")
    table = Table(title=f"{what} on {result.metrics.images} images of {result.gt}")
    for column in ("metric", "model", "mean shape", "better"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    rows = [
        ("MSE100", model.mse100, base.mse100, "lower", "{:.3f}"),
        ("NME (%)", model.nme, base.nme, "lower", "{:.3f}"),
        ("FR@0.10 (%)", model.fr10, base.fr10, "lower", "{:.2f}"),
        ("AUC@0.10", model.auc10, base.auc10, "higher", "{:.4f}"),
        ("PCK@0.05 (%)", model.pck05, base.pck05, "higher", "{:.2f}"),
        ("PCK@0.10 (%)", model.pck10, base.pck10, "higher", "{:.2f}"),
    ]
    for name, value, floor, better, spec in rows:
        table.add_row(name, spec.format(value), spec.format(floor), better)
    console.print(table)
    points = Table(title="NME per point (%)")
    for column in ("point", "model", "mean shape"):
        points.add_column(column, justify="left" if column == "point" else "right")
    for name, value in model.per_point_nme.items():
        points.add_row(name, f"{value:.2f}", f"{base.per_point_nme[name]:.2f}")
    console.print(points)
    console.print(f"baseline layout: {result.baseline_source}")
    if result.worst:
        listed = ", ".join(f"{w.filename} ({w.nme:.1f}%)" for w in result.worst[:5])
        console.print(f"worst images: {listed}" + (" ..." if len(result.worst) > 5 else ""))
    if result.plots:
        console.print(f"plots: {', '.join(result.plots.values())} and {len(result.worst)} worst images")
    if result.report:
        console.print(f"report: {result.report}")
    if result.mlflow_run_id and not result.mlflow_pending:
        console.print(f"logged to MLflow run {result.mlflow_run_id}")
