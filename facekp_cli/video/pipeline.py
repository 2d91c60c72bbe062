"""The per-frame loop `facekp infer VIDEO` and `facekp overlay VIDEO` share.

`track_video`: decode a frame, let the tracker choose the crops, run the model once on all of
them, turn the points into tracked (smoothed) faces."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from facekp_cli.predict.backends import Predictor
from facekp_cli.predict.detect import Box, FaceDetector, cut
from facekp_cli.settings import Settings
from facekp_cli.video.face_tracks import FaceTracker, TrackedFace, TrackerParams
from facekp_cli.video.io import Frame
from facekp_cli.video.smoothing import OneEuroFilter, OneEuroParams


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


class WholeFrame:
    """Without --detect every frame is one face crop: one track (id 1), smoothed all the same."""

    def __init__(self, params: TrackerParams) -> None:
        self.params, self.detections, self.cuts, self.next_id = params, 0, 0, 2
        self.smoother = OneEuroFilter(params.smoothing)
        self._crop: Box | None = None

    def plan(self, frame: np.ndarray, index: int) -> list[Box]:
        self._crop = Box(0, 0, frame.shape[1], frame.shape[0])
        return [self._crop]

    def update(self, points, time_s: float) -> list[TrackedFace]:
        from facekp_cli.video.face_tracks import eye_distance

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


def make_tracker(settings: Settings, predictor: Predictor, detect: bool) -> FaceTracker | WholeFrame:
    """A video is a scene: faces are searched (and frames without one give no rows) unless
    `detect` is False (--no-detect: every frame is one face crop)."""
    params = tracker_params(settings)
    if not detect:
        return WholeFrame(params)
    find, finder = make_detector(settings)
    return FaceTracker(find, predictor.meta.mean_shape, params, finder)


def track_video(
    tracker: FaceTracker | WholeFrame, predictor: Predictor, frames: Iterable[Frame]
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
