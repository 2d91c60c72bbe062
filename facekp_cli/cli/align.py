"""`facekp align`: aligned face crops (eyes and mouth on a fixed template) and their transforms."""

from __future__ import annotations

from pathlib import Path

import typer

from facekp_cli.cli.context import (
    build_settings,
    ckpt_option,
    detect_help,
    echo_err,
    make_console,
    model_option,
    report_skipped,
)
from facekp_cli.errors import ExitCode

app = typer.Typer(
    help="Cut aligned face crops (eyes and mouth on the ArcFace template) with a CSV of transforms.",
    context_settings={"allow_interspersed_args": True},
    subcommand_metavar="",
    no_args_is_help=True,
)


@app.callback(invoke_without_command=True)
def align(
    ctx: typer.Context,
    paths: list[str] = typer.Argument(..., metavar="PATH", help="Image files, folders or glob patterns."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the crops and transforms.csv."),
    ckpt: Path | None = ckpt_option(),
    model: Path | None = model_option(),
    size: int | None = typer.Option(None, "--size", min=16, help="Side of the square crop in pixels (112)."),
    margin: float | None = typer.Option(
        None, "--margin", min=0.0, help="Room around the template, fraction of the face (0: ArcFace's crop)."
    ),
    fmt: str | None = typer.Option(None, "--format", "-f", help="Crop image format: jpg or png."),
    detect: bool | None = typer.Option(None, "--detect/--no-detect", help=detect_help("one crop per face")),
    recursive: bool | None = typer.Option(
        None, "--recursive/--no-recursive", "-r", help="Search subfolders."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", min=1, help="Images per model call."),
) -> None:
    """Aligned crops for recognition; unreadable images are reported and skipped (exit code 4)."""
    from facekp_cli.services import align as service

    settings = build_settings(
        ctx,
        **{
            "align.size": size,
            "align.margin": margin,
            "align.format": fmt,
            "infer.detect": detect,
            "infer.recursive": recursive,
            "infer.batch_size": batch_size,
        },
    )
    result = service.run(settings, paths, out, ckpt=ckpt, model=model)
    for path, why in result.failed:
        echo_err(f"facekp: skipped {why}" if why.startswith(path) else f"facekp: skipped {path}: {why}")
    skipped = f", {result.skipped_faces} faces without eyes or mouth skipped" if result.skipped_faces else ""
    make_console(ctx).print(
        f"wrote {result.crops} crops of {result.images} images to {result.out_dir}, transforms in "
        f"{result.transforms}{skipped} ({result.seconds:.1f} s)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if result.partial:
        report_skipped(list(result.failed), result.images)
        raise typer.Exit(int(ExitCode.PARTIAL))
