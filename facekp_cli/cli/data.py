"""`facekp data ...`: dataset synthesis, import, validation, preview and DVC versioning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import typer

from facekp_cli.cli.context import build_settings, make_console

app = typer.Typer(help="Make, import, check, preview and version the dataset (DVC).", no_args_is_help=True)
import_app = typer.Typer(help="Convert a public dataset to facekp's format.", no_args_is_help=True)
app.add_typer(import_app, name="import")

_DIR_HELP = "Dataset folder (default: the data.root setting, faces_data)."


@app.command("synth")
def synth(
    ctx: typer.Context,
    n: int = typer.Option(6000, "--n", help="Number of images (train + test)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: data.root)."),
    seed: int = typer.Option(0, "--seed", help="Same seed and generator version, same images."),
    test_fraction: float = typer.Option(0.1, "--test-fraction", help="Share of images in test/."),
    workers: int | None = typer.Option(None, "--workers", help="Processes (default: all cores)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue what a killed run with the same --n/--seed left, not start over."
    ),
    shape_from: Path | None = typer.Option(
        None,
        "--shape-from",
        help="Face geometry from a labelled folder (a split with gt.csv, or a dataset's train/) or a "
        "saved shape model .json (default: the embedded model, fitted on real faces).",
    ),
    save_shape: Path | None = typer.Option(
        None, "--save-shape", help="Also write the shape model used to this .json (numbers only)."
    ),
) -> None:
    """Generate the embedded synthetic face dataset (exact sub-pixel labels)."""
    from facekp_cli.data.synth.generator import GENERATOR_VERSION
    from facekp_cli.services import data as service

    settings = build_settings(ctx, **{"data.root": out})
    from contextlib import nullcontext

    from facekp_cli.cli.progress import LineProgress, progress_stream

    console = make_console(ctx)
    stream = progress_stream(ctx)
    lines = LineProgress(stream, "data synth") if stream is not None else None

    def on_progress(done: int, total: int) -> None:
        if lines is None:
            return
        if lines.total == 0:
            lines.start(total)
            lines.advance(done)  # images a resumed run already had
        else:
            lines.advance(done - lines.done)

    busy = console.status(f"Synthesizing {n} face crops...") if lines is None else nullcontext()
    with busy:
        result = service.synth(
            settings,
            n,
            seed=seed,
            test_fraction=test_fraction,
            workers=workers,
            resume=resume,
            shape_from=shape_from,
            save_shape=save_shape,
            on_progress=on_progress,
        )
    if lines is not None:
        lines.finish()
    console.print(
        f"Wrote {result.train_count} train + {result.test_count} test images to {result.out_dir} "
        f"in {result.seconds:.1f} s (generator v{GENERATOR_VERSION}, seed {seed}, shape model "
        f"{result.shape_model})"
    )


@app.command("validate")
def validate(
    ctx: typer.Context,
    root: Path | None = typer.Argument(None, help=_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable report."),
    max_issues: int = typer.Option(30, "--max-issues", help="Issues listed in the table (all in --json)."),
) -> None:
    """Check images, labels and their agreement; exit 1 when errors are found."""
    from facekp_cli.errors import ExitCode
    from facekp_cli.services import data as service

    settings = build_settings(ctx, **{"data.root": root})
    report = service.validate(settings)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _render_report(ctx, report, max_issues)
    if not report.ok:
        raise typer.Exit(int(ExitCode.FAILURE))


def _render_report(ctx: typer.Context, report, max_issues: int) -> None:
    from rich.table import Table

    console = make_console(ctx)
    table = Table(title=f"Dataset {report.root}")
    for column in ("split", "rows", "images", "decoded", "points", "unlabelled", "errors", "warnings"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for s in report.splits:
        table.add_row(
            s.split,
            str(s.rows),
            str(s.images),
            str(s.decoded),
            str(s.labelled_points),
            str(s.unlabelled_images),
            f"[red]{s.errors}[/]" if s.errors else "0",
            f"[yellow]{s.warnings}[/]" if s.warnings else "0",
        )
    console.print(table)
    for issue in report.issues[:max_issues]:
        style = "red" if issue.severity == "error" else "yellow"
        console.print(f"[{style}]{issue.severity}[/] {issue.kind}: {issue.message}", soft_wrap=True)
    if len(report.issues) > max_issues:
        console.print(f"... and {len(report.issues) - max_issues} more (see --json)")
    verdict = "[green]OK[/]" if report.ok else f"[red]{len(report.errors)} error(s)[/]"
    console.print(f"{verdict}, {len(report.warnings)} warning(s)")


@app.command("show")
def show(
    ctx: typer.Context,
    root: Path | None = typer.Argument(None, help=_DIR_HELP),
    n: int = typer.Option(16, "--n", help="Number of samples."),
    out: Path = typer.Option(Path("grid.png"), "--out", help="Output picture (.png or .jpg)."),
    augment: bool = typer.Option(
        False, "--augment", help="Show each sample beside its training augmentation."
    ),
    split: Literal["train", "test"] = typer.Option("train", "--split", help="train or test."),
    seed: int = typer.Option(0, "--seed", help="Which samples (and augmentations) to draw."),
) -> None:
    """Draw samples with numbered keypoints (left points green, right points red)."""
    from facekp_cli.services import data as service

    settings = build_settings(ctx, **{"data.root": root})
    result = service.show(settings, out, split=split, n=n, seed=seed, augment=augment)
    what = "samples beside their augmentation" if result.augmented else "samples"
    make_console(ctx).print(
        f"Wrote {result.out} ({result.width}x{result.height} px): {len(result.samples)} {result.split} {what}"
    )


_REMOTE_HELP = "DVC remote name or URL (default: the data.remote setting, else DVC's default remote)."


@app.command("push")
def push(
    ctx: typer.Context,
    root: Path | None = typer.Argument(None, help=_DIR_HELP),
    remote: str | None = typer.Option(None, "--remote", help=_REMOTE_HELP),
) -> None:
    """Track the dataset with DVC and upload it (dvc add + dvc push)."""
    from facekp_cli.services import data as service

    settings = build_settings(ctx, **{"data.root": root, "data.remote": remote})
    result = service.push(settings)
    _render_transfer(ctx, result)


@app.command("pull")
def pull(
    ctx: typer.Context,
    root: Path | None = typer.Argument(None, help=_DIR_HELP),
    remote: str | None = typer.Option(None, "--remote", help=_REMOTE_HELP),
    force: bool = typer.Option(False, "--force", help="Overwrite local changes to the dataset."),
) -> None:
    """Restore the dataset version recorded in the .dvc file from the remote."""
    from facekp_cli.services import data as service

    settings = build_settings(ctx, **{"data.root": root, "data.remote": remote})
    result = service.pull(settings, force=force)
    _render_transfer(ctx, result)


def _render_transfer(ctx: typer.Context, result) -> None:
    version = result.version
    size = f", {version.size / 1e6:.1f} MB" if version.size else ""
    files = f"{version.files} files" if version.files is not None else "dataset"
    verb = "Pushed" if result.action == "push" else "Pulled"
    rebuilt = getattr(result, "rebuilt", None)
    if rebuilt is not None:
        make_console(ctx).print(
            f"Rebuilt {result.data_dir} with the generator (v{rebuilt.generator_version}, "
            f"{rebuilt.recipe.describe()}) in {rebuilt.seconds:.1f} s: md5 {rebuilt.md5} matches "
            f"{version.dvc_file}; remote {result.remote} does not hold it",
            soft_wrap=True,
        )
        return
    make_console(ctx).print(
        f"{verb} {result.data_dir} ({files}{size}, md5 {version.md5}) "
        f"{'to' if result.action == 'push' else 'from'} {result.remote}: "
        f"{result.transferred} object(s) transferred in {result.seconds:.1f} s; version in {version.dvc_file}"
    )


@app.command("status")
def status(
    ctx: typer.Context,
    root: Path | None = typer.Argument(None, help=_DIR_HELP),
    remote: str | None = typer.Option(None, "--remote", help=_REMOTE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Say whether the dataset folder, its .dvc file and the remote agree (exit 1 if not)."""
    from facekp_cli.errors import ExitCode
    from facekp_cli.services import data as service

    settings = build_settings(ctx, **{"data.root": root, "data.remote": remote})
    result = service.status(settings)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        console = make_console(ctx)
        mark = {True: "[green]in sync[/]", False: "[yellow]out of sync[/]"}[result.in_sync]
        console.print(f"{result.data_dir}: {mark}")
        console.print(f"  workspace vs {result.dvc_file}: {result.workspace}")
        console.print(f"  {result.dvc_file} vs remote {result.remote}: {result.remote_state}")
        if result.version is not None and result.version.md5:
            console.print(f"  version: md5 {result.version.md5}, {result.version.files} files")
        for line in result.details:
            console.print(f"  - {line}", soft_wrap=True)
    if not result.in_sync:
        raise typer.Exit(int(ExitCode.FAILURE))


_OUT_HELP = "Output dataset folder; must be new or empty (default: data.root)."


@import_app.command("kaggle")
def import_kaggle(
    ctx: typer.Context,
    csv_path: Path = typer.Argument(..., help="Kaggle Facial Keypoints Detection training.csv."),
    out: Path | None = typer.Option(None, "--out", help=_OUT_HELP),
    test_fraction: float = typer.Option(0.1, "--test-fraction", help="Share of rows in test/."),
    seed: int = typer.Option(0, "--seed", help="Seed of the train/test split."),
) -> None:
    """Convert Kaggle's 96x96 grey faces (15 points, subject's view) to the 14-point format."""
    from facekp_cli.services import data as service

    settings = build_settings(ctx)
    _render_import(ctx, service.import_kaggle(settings, csv_path, out, test_fraction, seed))


@import_app.command("ibug")
def import_ibug(
    ctx: typer.Context,
    src_dir: Path = typer.Argument(
        ..., help="Folder of images with 68-point .pts files (300W, iBUG, HELEN...)."
    ),
    out: Path | None = typer.Option(None, "--out", help=_OUT_HELP),
    test_fraction: float = typer.Option(0.1, "--test-fraction", help="Share of faces in test/."),
    seed: int = typer.Option(0, "--seed", help="Seed of the train/test split."),
    margin: float = typer.Option(0.2, "--margin", help="Crop margin around the landmarks, x face size."),
    max_side: int = typer.Option(320, "--max-side", help="Larger crops are downscaled to this many pixels."),
) -> None:
    """Crop each annotated face around its landmarks and convert 68 points to the 14-point format."""
    from facekp_cli.services import data as service

    settings = build_settings(ctx)
    _render_import(ctx, service.import_ibug(settings, src_dir, out, test_fraction, seed, margin, max_side))


def _render_import(ctx: typer.Context, result) -> None:
    console = make_console(ctx)
    console.print(
        f"Imported {result.source}: {result.train_count} train + {result.test_count} test images, "
        f"{result.labelled_points} labelled points -> {result.out_dir}"
    )
    if result.skipped:
        console.print(f"[yellow]Skipped {len(result.skipped)} bad input(s):[/]")
        for row in result.skipped[:20]:
            console.print(f"  {row.where}: {row.reason}", soft_wrap=True)
        if len(result.skipped) > 20:
            console.print(f"  ... and {len(result.skipped) - 20} more")
