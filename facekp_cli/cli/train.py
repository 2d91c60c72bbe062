"""`facekp train`: fit the keypoint model; prints the best checkpoint and its validation metrics."""

from __future__ import annotations

from pathlib import Path

import typer

from facekp_cli.cli.context import build_settings, make_console, quiet_lightning, state

app = typer.Typer(help="Train the keypoint model (Lightning; MLflow tracking; resumable).")

_SCALE = "Scale-out (passed to Lightning)"


@app.callback(invoke_without_command=True)
def train(
    ctx: typer.Context,
    epochs: int | None = typer.Option(None, "--epochs", help="Maximum epochs [train.epochs: 40]."),
    data: Path | None = typer.Option(None, "--data", help="Dataset folder [data.root: faces_data]."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Per-device batch [train.batch_size]."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate [train.lr]."),
    seed: int | None = typer.Option(
        None, "--seed", help="Seed for split, init and augmentation [train.seed]."
    ),
    resume: Path | None = typer.Option(
        None, "--resume", help="Continue a run from its last.ckpt (same epochs, optimizer and MLflow run)."
    ),
    run_name: str | None = typer.Option(None, "--run-name", help="Run folder name under train.out_dir."),
    no_tracking: bool | None = typer.Option(None, "--no-tracking", help="Do not log to MLflow."),
    accelerator: str | None = typer.Option(
        None, "--accelerator", help="cpu, gpu, auto...", rich_help_panel=_SCALE
    ),
    devices: str | None = typer.Option(
        None, "--devices", help="Count or list, e.g. 2 or 0,1.", rich_help_panel=_SCALE
    ),
    strategy: str | None = typer.Option(None, "--strategy", help="auto, ddp, ...", rich_help_panel=_SCALE),
    num_nodes: int | None = typer.Option(
        None, "--num-nodes", help="Machines (torchrun/SLURM).", rich_help_panel=_SCALE
    ),
    precision: str | None = typer.Option(
        None, "--precision", help="32-true, bf16-mixed, ...", rich_help_panel=_SCALE
    ),
) -> None:
    """Train on DATA/train (a seeded share held out for validation) and keep the best checkpoint."""
    from facekp_cli.services import train as service

    settings = build_settings(
        ctx,
        **{
            "train.epochs": epochs,
            "data.root": data,
            "train.batch_size": batch_size,
            "train.lr": lr,
            "train.seed": seed,
            "train.resume": resume,
            "train.run_name": run_name,
            "tracking.enabled": False if no_tracking else None,
            "train.accelerator": accelerator,
            "train.devices": devices,
            "train.strategy": strategy,
            "train.num_nodes": num_nodes,
            "train.precision": precision,
        },
    )
    quiet = state(ctx).quiet
    callbacks = []
    quiet_lightning(state(ctx).verbose)
    from facekp_cli.cli.progress import epoch_lines_callback, progress_stream

    stream = progress_stream(ctx)
    if stream is not None:  # a log file or pipe: one plain line per epoch
        callbacks.append(epoch_lines_callback(stream))
    elif not quiet:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar())
    result = service.run(settings, callbacks=callbacks)
    if result.global_rank == 0:
        _render(ctx, result)


def _render(ctx: typer.Context, result) -> None:
    from rich.table import Table

    console = make_console(ctx)
    how = "stopped early (no validation NME gain)" if result.stopped_early else "done"
    console.print(f"Training {how}: {result.epochs_completed} epochs in {result.seconds:.0f} s")
    if result.best_checkpoint is None:
        console.print("[yellow]No best checkpoint (validation NME was never finite).[/]")
        return
    table = Table()
    table.add_column("validation (best epoch)")
    table.add_column("value", justify="right")
    labels = {"val_mse100": "MSE100", "val_nme": "NME (%)", "val_fr10": "FR@0.10 (%)", "val_loss": "loss"}
    for key, label in labels.items():
        if key in result.metrics:
            table.add_row(label, f"{result.metrics[key]:.4g}")
    console.print(table)
    lines = [f"Best checkpoint: {result.best_checkpoint} (epoch {result.best_epoch})"]
    if result.stable_best_path is not None:
        lines.append(
            f"Copied to:       {result.stable_best_path}  (facekp eval --ckpt {result.stable_best_path})"
        )
    if result.last_checkpoint is not None:
        lines.append(
            f"Last checkpoint: {result.last_checkpoint}  (facekp train --resume {result.last_checkpoint})"
        )
    if result.run_id:
        uri = result.tracking_uri
        lines.append(f"MLflow run:      {result.run_id} in {uri}  (mlflow ui --backend-store-uri {uri})")
    for line in lines:
        console.print(line, soft_wrap=True, markup=False)
