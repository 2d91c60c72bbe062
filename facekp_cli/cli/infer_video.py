"""The video half of `facekp infer`: one video file or camera in, per-frame keypoints out.

`facekp infer` hands over here when its input is a video (mp4, avi, mov, mkv, ...) or a camera
(`camera:0`, `/dev/video0`); this module renders services.video's result.
"""

from __future__ import annotations

from pathlib import Path

import typer

from facekp_cli.cli.context import build_settings, echo_err, make_console
from facekp_cli.errors import ExitCode


def video_input(paths: list[str]) -> str | None:
    """The one video among the inputs, None for images only; a mix or several videos is an error."""
    from facekp_cli.errors import UsageError
    from facekp_cli.media import is_video_input  # the one rule (facekp_cli.media after issue 20)

    videos = [p for p in paths if is_video_input(str(p))]
    if not videos:
        return None
    if len(paths) > 1:
        raise UsageError(
            f"a video is read on its own: got {len(paths)} inputs ({', '.join(map(str, paths))}); "
            "run facekp infer once per video"
        )
    return str(videos[0])


def run_video(
    ctx: typer.Context,
    source: str,
    out: Path,
    *,
    ckpt: Path | None,
    model: Path | None,
    fmt: str | None,
    draw: Path | None,
    max_frames: int | None,
    flags: dict,
) -> None:
    from facekp_cli.cli.progress import LoopProgress
    from facekp_cli.services import video as service

    settings = build_settings(ctx, **flags)
    progress = LoopProgress(
        ctx, "infer", unit="frames", stdout_is_data=str(out) == "-", no_bar=str(out) == "-"
    )

    def on_start(frames) -> None:
        total = frames.frame_count if frames.camera is None else None
        if max_frames is not None and total is not None:
            total = min(total, max_frames)
        progress.start(total)

    def on_frame(frame, faces) -> None:
        progress.advance()

    try:
        result = service.run(
            settings,
            source,
            out,
            ckpt=ckpt,
            model=model,
            fmt=fmt,
            draw=draw,
            max_frames=max_frames,
            on_start=on_start,
            on_frame=on_frame,
        )
    finally:
        progress.stop()
    where = "standard output" if result.out is None else str(result.out)
    summary = (
        f"wrote {where} ({result.format}): {result.frames} frames of {result.source}, "
        f"{result.faces} faces in {result.tracks} tracks, in {result.seconds:.1f} s "
        f"({result.frames_per_s:.1f} frames/s)" + (f"; annotated video {result.draw}" if result.draw else "")
    )
    make_console(ctx, stderr=result.out is None).print(summary, markup=False, highlight=False, soft_wrap=True)
    if result.stopped_early:
        kept = f"the {result.frames} frames read are kept"
        echo_err(f"facekp: warning: {result.source}: {result.stopped_early}; {kept}")
        raise typer.Exit(int(ExitCode.PARTIAL))
    if result.interrupted:
        echo_err(f"facekp: interrupted; the {result.frames} frames read are kept")
        raise typer.Exit(int(ExitCode.INTERRUPTED))
