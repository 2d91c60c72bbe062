"""`facekp infer VIDEO` (and the video half of `facekp overlay`): keypoints per frame with face ids.

`track_video` is the loop both verbs share: decode a frame, let the tracker choose the crops,
run the model once on all of them, turn the points into tracked (smoothed) faces. `run` streams
them to JSON Lines or CSV and optionally an annotated video.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from facekp_cli import __version__
from facekp_cli.outputs import check_name_length, refuse_input_as_output
from facekp_cli.predict.backends import Predictor, open_predictor
from facekp_cli.predict.detect import Box, FaceDetector, cut
from facekp_cli.predict.smoothing import OneEuroFilter, OneEuroParams
from facekp_cli.predict.tracking import FaceTracker, TrackedFace, TrackerParams
from facekp_cli.predict.video import Frame, VideoFrames, VideoWriter
from facekp_cli.settings import Settings


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


def tracker_params(settings: Settings) -> TrackerParams:
    v = settings.video
    return TrackerParams(
        detect_every=v.detect_every,
        iou_threshold=v.iou_threshold,
        max_missed=v.max_missed,
        cut_threshold=v.cut_threshold,
        smooth=v.smooth,
        smoothing=OneEuroParams(v.min_cutoff, v.beta, v.d_cutoff),
    )


def video_format(settings: Settings, out: str | Path, explicit: str | None) -> str:
    """JSON Lines or CSV, by the rule every predictions output follows (predict/formats.py)."""
    from facekp_cli.predict.formats import output_format

    return output_format(out, explicit, settings.infer.format, video=True)


class _WholeFrame:
    """Without --detect every frame is one face crop: one track (id 1), smoothed all the same."""

    def __init__(self, params: TrackerParams) -> None:
        self.params, self.detections, self.cuts, self.next_id = params, 0, 0, 2
        self.smoother = OneEuroFilter(params.smoothing)
        self._crop: Box | None = None

    def plan(self, frame: np.ndarray, index: int) -> list[Box]:
        self._crop = Box(0, 0, frame.shape[1], frame.shape[0])
        return [self._crop]

    def update(self, points, time_s: float) -> list[TrackedFace]:
        from facekp_cli.predict.tracking import eye_distance

        raw = np.asarray(points[0], np.float64)
        smooth = self.smoother(raw, time_s, max(eye_distance(raw), 1.0)) if self.params.smooth else raw
        return [TrackedFace(1, self._crop, self._crop, smooth.astype(np.float32), raw.astype(np.float32))]


def make_detector(settings: Settings) -> tuple[Callable[[np.ndarray], list[Box]], str]:
    """The face finder (infer.finder) on a frame shrunk to video.detect_side pixels (boxes scaled
    back), and the finder's name."""
    import cv2

    detector = FaceDetector(settings.infer.finder, settings.infer.min_face_score)
    side = settings.video.detect_side

    def detect(frame: np.ndarray) -> list[Box]:
        height, width = frame.shape[:2]
        scale = min(1.0, side / max(height, width))
        if scale >= 1.0:
            return detector.detect(frame)
        small = cv2.resize(frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        return [b.scaled(1 / scale) for b in detector.detect(small)]

    return detect, detector.name


def make_tracker(settings: Settings, predictor: Predictor, detect: bool) -> FaceTracker | _WholeFrame:
    """A video is a scene: faces are searched (and frames without one give no rows) unless
    `detect` is False (--no-detect: every frame is one face crop)."""
    params = tracker_params(settings)
    if not detect:
        return _WholeFrame(params)
    find, finder = make_detector(settings)
    return FaceTracker(find, predictor.meta.mean_shape, params, finder)


def track_video(
    tracker: FaceTracker | _WholeFrame, predictor: Predictor, frames: Iterable[Frame]
) -> Iterator[tuple[Frame, list[TrackedFace]]]:
    """(frame, faces) for every decoded frame, in order; the tracker keeps its counts."""
    from facekp_cli.frame import normalised_to_points, prepare_image

    prep = predictor.meta.preprocessing
    for frame in frames:
        crops = tracker.plan(frame.image, frame.index)
        parts = [cut(frame.image, crop) for crop in crops]
        points = []
        if parts:
            outputs = predictor.predict(np.stack([prepare_image(part, prep) for part, _ in parts]))
            for (_, box), out in zip(parts, outputs, strict=True):
                points.append(normalised_to_points(out, box.width, box.height) + np.float32([box.x, box.y]))
        yield frame, tracker.update(points, frame.time_s)


def draw_tracked(image: np.ndarray, faces: list[TrackedFace]) -> np.ndarray:
    """Points, the crop the model saw and the face id, drawn on a copy of the frame."""
    import cv2

    from facekp_cli.plots import BOX_COLOR, draw_keypoints

    canvas = draw_keypoints(image, [f.points for f in faces], boxes=[f.crop for f in faces])
    scale = max(0.4, min(image.shape[:2]) / 600)
    for face in faces:
        origin = (round(face.crop.x) + 3, round(face.crop.y) + round(22 * scale))
        cv2.putText(
            canvas,
            f"#{face.id}",
            origin,
            cv2.FONT_HERSHEY_SIMPLEX,
            0.7 * scale,
            BOX_COLOR,
            max(1, round(2 * scale)),
            cv2.LINE_AA,
        )
    return canvas


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
    from facekp_cli.predict.video_output import CsvVideoWriter, JsonLinesVideoWriter
    from facekp_cli.services.infer import finding

    if str(out) != "-":
        check_name_length(out)  # before the model loads and the first frame is read
        refuse_input_as_output(out, [source])
    if draw is not None:
        refuse_input_as_output(draw, [source], "--draw")
    fmt = video_format(settings, out, fmt)
    choice = resolve(settings, ckpt, model)
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
