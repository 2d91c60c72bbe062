"""`facekp infer`: keypoints for image files, folders or glob patterns, as JSON or gt.csv."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from facekp_cli.cli.context import (
    build_settings,
    ckpt_option,
    detect_help,
    make_console,
    model_option,
    report_skipped,
)
from facekp_cli.errors import ExitCode

app = typer.Typer(
    help="Predict the 14 keypoints for images (files, folders or glob patterns).",
    context_settings={"allow_interspersed_args": True},  # options may follow the paths
    subcommand_metavar="",
    no_args_is_help=True,
)


@app.callback(invoke_without_command=True)
def infer(
    ctx: typer.Context,
    paths: list[str] = typer.Argument(
        ..., metavar="PATH", help="Image files, folders or glob patterns; or one video file or camera:N."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Output file: .json (written atomically), .jsonl or .csv (see --resume); default or -: standard "
        "output. The name's suffix is the format; a .csv gets NAME.csv.model.json beside it (the model).",
    ),
    ckpt: Path | None = ckpt_option(),
    model: Path | None = model_option(),
    fmt: Literal["json", "jsonl", "csv"] | None = typer.Option(
        None,
        "--format",
        "-f",
        help="json, jsonl or csv; must agree with the --out suffix (needed for - or a name without one).",
    ),
    draw: Path | None = typer.Option(
        None,
        "--draw",
        help="Folder for copies of the images with points drawn (a video: the annotated video out.mp4).",
    ),
    recursive: bool | None = typer.Option(
        None, "--recursive/--no-recursive", "-r", help="Search subfolders."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", min=1, help="Images per model call."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or cuda:N (checkpoints only)."),
    detect: bool | None = typer.Option(None, "--detect/--no-detect", help=detect_help("one entry per face")),
    workers: int | None = typer.Option(None, "--workers", "-j", min=0, help="Background decoding threads."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Append to a .jsonl/.csv --out, flushed per batch, skipping files already in it "
        "(continue a killed run).",
    ),
    detect_every: int | None = typer.Option(
        None, "--detect-every", min=1, help="Video: run the face detector every N frames."
    ),
    smooth: bool | None = typer.Option(
        None, "--smooth/--no-smooth", help="Video: One-Euro smoothing of the points (default on)."
    ),
    max_frames: int | None = typer.Option(None, "--max-frames", min=1, help="Video: stop after N frames."),
    engine: str | None = typer.Option(
        None,
        "--engine",
        help="local (this process) or ray: Ray Data over a cluster, --out a folder of shards "
        "(infer.engine; docs/SCALE.md).",
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster for --engine ray (default: RAY_ADDRESS, else a local one)."
    ),
) -> None:
    """Predict keypoints; unreadable files are reported and skipped (exit code 4).

    A video file or camera gives one record per frame (JSON Lines or CSV) with face ids; a broken or
    truncated video keeps the frames read and exits 4.
    """
    from facekp_cli.cli import infer_video

    out = Path("-") if out is None else out
    source = infer_video.video_input(paths)
    if source is not None:
        if resume:
            from facekp_cli.errors import UsageError

            raise UsageError(
                f"{source}: --resume continues image runs; a video's output is written whole, "
                "so give a new --out (the old one is kept until the new one is complete)"
            )
        flags = {"infer.device": device, "infer.detect": detect, "video.detect_every": detect_every,
                 "video.smooth": smooth}  # fmt: skip
        infer_video.run_video(ctx, source, out, ckpt=ckpt, model=model, fmt=fmt, draw=draw,
                              max_frames=max_frames, flags=flags)  # fmt: skip
        return
    from facekp_cli.services import infer as service

    if engine == "ray" or (engine is None and build_settings(ctx).infer.engine == "ray"):
        from facekp_cli.cli import infer_ray

        flags = {"infer.recursive": recursive, "infer.batch_size": batch_size, "infer.device": device,
                 "infer.detect": detect, "ray.address": ray_address}  # fmt: skip
        infer_ray.run_ray(ctx, paths, out, ckpt=ckpt, model=model, fmt=fmt, resume=resume, draw=draw,
                          flags=flags)  # fmt: skip
        return
    if engine not in (None, "local", "ray"):
        from facekp_cli.errors import UsageError

        raise UsageError(f"--engine {engine}: use local or ray")
    settings = build_settings(
        ctx,
        **{
            "infer.format": fmt,
            "infer.recursive": recursive,
            "infer.batch_size": batch_size,
            "infer.device": device,
            "infer.detect": detect,
            "infer.num_workers": workers,
        },
    )
    from facekp_cli.cli.progress import LoopProgress

    progress = LoopProgress(ctx, "infer", stdout_is_data=str(out) == "-")

    def on_image(result) -> None:
        if result.error is not None:
            progress.note(f"facekp: skipped {result.error}")
        progress.advance()

    try:
        result = service.run(
            settings, paths, out, ckpt=ckpt, model=model, fmt=fmt, draw_dir=draw,
            on_start=progress.start, on_image=on_image, resume=resume,
        )  # fmt: skip
    finally:
        progress.stop()
    faces = f", {result.faces} faces" if result.faces is not None else ""
    if result.faces is not None and result.crops:
        faces += f" ({result.crops} images were face crops, used whole)"
    if result.already_done:
        faces += f" (+{result.already_done} already in the file)"
    failed = f", {len(result.failed)} failed" if result.failed else ""
    to_stdout = str(result.out) == "-"  # then the summary goes to stderr, off the predictions
    make_console(ctx, stderr=to_stdout).print(
        f"wrote {'standard output' if to_stdout else result.out} ({result.format}): "
        f"{result.images} images{faces}{failed} "
        f"in {result.seconds:.1f} s ({result.images_per_s:.1f} images/s)"
        + (f"; drawings in {result.draw_dir}" if result.draw_dir else "")
    )
    if result.partial:
        where = f"listed in {out}" if result.format != "csv" else "no rows in the CSV"
        report_skipped([(f.path, f.error) for f in result.failed], result.images, where)
        raise typer.Exit(int(ExitCode.PARTIAL))
