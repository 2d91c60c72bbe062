"""`facekp infer`: keypoints for image files, folders or glob patterns, as JSON or gt.csv."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import typer

from facekp_cli.cli.context import build_settings, echo_err, make_console, state
from facekp_cli.errors import ExitCode, UsageError

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
        help="Output file: .json (written atomically), .jsonl or .csv (see --resume); "
        "default or '-': standard output.",
    ),
    ckpt: Path | None = typer.Option(
        None, "--ckpt", help="Training checkpoint (default: train.best_path, else the shipped model)."
    ),
    model: Path | None = typer.Option(None, "--model", help="Exported model (.onnx or TorchScript .pt)."),
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="json, jsonl or csv (default: the --out extension, else infer.format)."
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
    detect: bool | None = typer.Option(
        None,
        "--detect/--no-detect",
        help="Find faces in photos first (OpenCV Haar cascade); one entry per face.",
    ),
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
) -> None:
    """Predict keypoints; unreadable files are reported and skipped (exit code 4).

    A video file or camera gives one record per frame (JSON Lines or CSV) with face ids; a broken or
    truncated video keeps the frames read and exits 4.
    """
    from facekp_cli.cli import infer_video

    source = infer_video.video_input(paths)
    to_stdout = out is None or str(out) == "-"
    if source is not None:
        out = Path("-") if out is None else out
        flags = {"infer.device": device, "infer.detect": detect, "video.detect_every": detect_every,
                 "video.smooth": smooth}  # fmt: skip
        infer_video.run_video(ctx, source, out, ckpt=ckpt, model=model, fmt=fmt, draw=draw,
                              max_frames=max_frames, flags=flags)  # fmt: skip
        return
    from facekp_cli.services import infer as service

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
    console = make_console(ctx, stderr=True)
    progress = progress_bar(console, hidden=state(ctx).quiet)

    task: list = []  # the progress task, created once the number of images is known

    def on_start(total: int) -> None:
        progress.start()
        task.append(progress.add_task("infer", total=total))

    def on_image(result) -> None:
        if result.error is not None:
            # soft_wrap: one line per file however long the path, so logs can be grepped
            progress.console.print(
                f"facekp: skipped {result.error}", markup=False, highlight=False, soft_wrap=True
            )
        progress.advance(task[0])

    if to_stdout and resume:
        raise UsageError("--resume needs an --out file to continue")
    with contextlib.ExitStack() as stack:
        if to_stdout:  # the whole result, written as a file would be, then copied to stdout
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="facekp-infer-")))
            out = scratch / f"predictions.{fmt or settings.infer.format}"
        try:
            result = service.run(
                settings, paths, out, ckpt=ckpt, model=model, fmt=fmt, draw_dir=draw,
                on_start=on_start, on_image=on_image, resume=resume,
            )  # fmt: skip
        finally:
            if task:  # a Progress that never started still prints a blank line on stop()
                progress.stop()
        if to_stdout:
            sys.stdout.write(result.out.read_text(encoding="utf-8"))
            sys.stdout.flush()
    faces = f", {result.faces} faces" if result.faces is not None else ""
    if result.already_done:
        faces += f" (+{result.already_done} already in the file)"
    failed = f", {len(result.failed)} failed" if result.failed else ""
    make_console(ctx, stderr=to_stdout).print(
        f"wrote {'standard output' if to_stdout else result.out} ({result.format}): "
        f"{result.images} images{faces}{failed} "
        f"in {result.seconds:.1f} s ({result.images_per_s:.1f} images/s)"
        + (f"; drawings in {result.draw_dir}" if result.draw_dir else "")
    )
    if result.partial:
        shown = "the output" if to_stdout else out
        where = f"listed in {shown}" if result.format != "csv" else "no rows in the CSV"
        echo_err(f"facekp: {len(result.failed)} of {result.images} files could not be read ({where})")
        raise typer.Exit(int(ExitCode.PARTIAL))


def progress_bar(console, hidden: bool, unit: str = "images"):
    """The progress bar of infer (images) and of video infer (frames)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TimeElapsedColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            elapsed = task.finished_time or task.elapsed
            return Text(f"{task.completed / elapsed:.1f} {unit}/s" if elapsed else f"- {unit}/s")

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=hidden,
        transient=False,
    )
