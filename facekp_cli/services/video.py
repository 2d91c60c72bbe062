"""`facekp infer VIDEO`: keypoints per frame with face ids.

`run` streams the tracked faces of video/pipeline.py's per-frame loop to JSON Lines or CSV and
optionally an annotated video."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from facekp_cli import __version__
from facekp_cli.outputs import check_name_length, refuse_input_as_output
from facekp_cli.predict.backends import open_predictor
from facekp_cli.settings import Settings
from facekp_cli.video.face_tracks import TrackedFace
from facekp_cli.video.io import Frame, VideoFrames, VideoWriter
from facekp_cli.video.pipeline import draw_tracked, make_tracker, track_video


@dataclass(frozen=True)
class VideoResult:
    source: str
    out: Path | None  # None: written to standard output
    format: str
    frames: int
    faces: int  # face records written (a face in a frame counts once)
    tracks: int  # distinct face ids
    detections: int  # frames the detector ran on
    cuts: int
    seconds: float
    fps: float  # the video's own frame rate
    stopped_early: str | None = None  # a broken or truncated file: why it ended early
    interrupted: bool = False
    draw: Path | None = None
    model: dict[str, Any] = field(default_factory=dict)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    @property
    def partial(self) -> bool:
        return self.stopped_early is not None


def video_format(settings: Settings, out: str | Path, explicit: str | None) -> str:
    """JSON Lines or CSV, by the rule every predictions output follows (predict/formats.py)."""
    from facekp_cli.predict.formats import output_format

    return output_format(out, explicit, settings.infer.format, video=True)


def run(
    settings: Settings,
    source: str,
    out: str | Path,
    *,
    ckpt: Path | None = None,
    model: Path | None = None,
    fmt: str | None = None,
    draw: Path | None = None,
    max_frames: int | None = None,
    on_start: Callable[[VideoFrames], None] | None = None,
    on_frame: Callable[[Frame, list[TrackedFace]], None] | None = None,
) -> VideoResult:
    """Keypoints for every frame of one video file or camera, streamed to `out` ('-': stdout).

    The output is written under a temporary name and renamed at the end (also after Ctrl-C or a
    broken file: the frames read so far are kept); standard output is written line by line.
    """
    from facekp_cli.atomic import atomic_path
    from facekp_cli.model.resolve import resolve
    from facekp_cli.services.infer import finding
    from facekp_cli.video.output import CsvVideoWriter, JsonLinesVideoWriter

    if str(out) != "-":
        check_name_length(out)  # before the model loads and the first frame is read
        refuse_input_as_output(out, [source])
    if draw is not None:
        refuse_input_as_output(draw, [source], "--draw")
    fmt = video_format(settings, out, fmt)
    choice = resolve(settings, ckpt, model, device=settings.infer.device)
    ckpt, model = choice.ckpt, choice.model
    predictor = open_predictor(ckpt, model, settings.infer.device)
    detect = settings.infer.detect is not False  # auto: a video is a scene, its faces are searched
    finder = finding(settings)["finder"] if detect else None
    names = predictor.meta.keypoint_names
    faces_written = frames_done = 0
    interrupted = False
    with ExitStack() as stack:
        frames = stack.enter_context(VideoFrames(source, max_frames=max_frames))
        header = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "facekp_version": __version__,
            "source": frames.name,
            "fps": round(frames.fps, 4),
            "width": frames.width,
            "height": frames.height,
            "frame_count": frames.frame_count,
            "model": predictor.provenance(),
            "keypoint_names": list(names),
            "detect": detect,
            "finder": finder,
            "video": settings.video.model_dump(mode="json"),
        }
        if str(out) == "-":
            fh = sys.stdout
        else:
            tmp = stack.enter_context(atomic_path(out))
            fh = stack.enter_context(open(tmp, "w", encoding="utf-8", newline=""))
        writer = CsvVideoWriter(fh, names) if fmt == "csv" else JsonLinesVideoWriter(fh, header, names)
        video = None
        if draw is not None:
            video = VideoWriter(draw, frames.fps, frames.width, frames.height)
            stack.callback(lambda: video.abort() if video.partial.exists() else None)
        if on_start is not None:
            on_start(frames)
        started, started_cpu = time.perf_counter(), time.process_time()
        tracker = make_tracker(settings, predictor, detect)
        try:
            for frame, faces in track_video(tracker, predictor, frames):
                writer.write(frame.index, frame.time_s, faces)
                if video is not None:
                    video.write(draw_tracked(frame.image, faces))
                faces_written += len(faces)
                frames_done += 1
                if on_frame is not None:
                    on_frame(frame, faces)
        except KeyboardInterrupt:
            interrupted = True  # keep what was written: a camera is normally stopped this way
        seconds = time.perf_counter() - started
        stopped = None if interrupted else frames.stopped_early
        summary = {
            "frames": frames_done,
            "faces": faces_written,
            "tracks": tracker.next_id - 1,
            "detections": tracker.detections,
            "cuts": tracker.cuts,
            "seconds": round(seconds, 3),
            "cpu_seconds": round(time.process_time() - started_cpu, 3),
            "stopped_early": stopped,
            "interrupted": interrupted,
        }
        writer.close(summary)
        if video is not None:
            video.finish()
    return VideoResult(
        frames.name,
        None if str(out) == "-" else Path(out),
        fmt,
        frames_done,
        faces_written,
        tracker.next_id - 1,
        tracker.detections,
        tracker.cuts,
        seconds,
        frames.fps,
        stopped,
        interrupted,
        Path(draw) if draw else None,
        predictor.provenance(),
    )
