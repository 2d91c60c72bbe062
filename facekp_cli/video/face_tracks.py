"""Following faces across video frames with stable ids.

The detector (a Haar cascade, ~20-40 ms on a 640x480 frame here) runs every `detect_every`
frames; in between, each face's next crop is cut from where its own keypoints were in the frame
before (the ROI-from-landmarks scheme of MediaPipe's face mesh), which costs nothing beyond the
model call. On a detection frame, detections are matched to tracks by IoU of their crops
(greedy, best overlap first): a matched track keeps its id, an unmatched detection starts a new
id, and a track missed by `max_missed` detection rounds in a row ends. A scene cut (the whole
frame changes at once) forces a detection and ends every track, so a new shot's face never
inherits the last shot's id or its smoothing history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from facekp_cli.keypoints import LEFT_EYE_OUTER, MOUTH_CENTER, RIGHT_EYE_OUTER
from facekp_cli.predict.detect import DEFAULT_MARGIN, Box, crop_for_face, iou
from facekp_cli.video.smoothing import OneEuroFilter, OneEuroParams

CUT_SIZE = (64, 48)  # frames are compared for scene cuts at this size (grey)
MIN_EYE_DISTANCE_PX = 3.0  # keypoints closer than this are no face to follow
REANCHOR_IOU = 0.5  # a matched track whose crop overlaps its detection less restarts from the detection
DUPLICATE_IOU = 0.5  # an unmatched track this much on top of a matched one is the same face twice


@dataclass(frozen=True)
class TrackerParams:
    detect_every: int = 5  # run the detector every N frames (1: every frame)
    iou_threshold: float = 0.3  # a detection continues a track when their crops overlap this much
    max_missed: int = 1  # detection rounds a track may go unmatched before it ends
    cut_threshold: float = 25.0  # mean absolute grey change (0-255) between frames that is a cut
    max_crop_change: float = 1.6  # a crop growing/shrinking more than this per frame is a lost face
    smooth: bool = True
    smoothing: OneEuroParams = field(default_factory=OneEuroParams)


def eye_distance(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[RIGHT_EYE_OUTER] - points[LEFT_EYE_OUTER]))


def crop_from_points(points: np.ndarray, mean_shape: Sequence[Sequence[float]] | None) -> Box | None:
    """The training-style crop that puts a face's eyes and mouth where the model expects them.

    Sizes come from the eye distance and the eye-to-mouth distance (both unchanged by a roll of
    the head), the position from the centroid of the three anchors. None when the points are not
    a usable face (NaN, or eyes on top of each other).
    """
    left, right, mouth = points[LEFT_EYE_OUTER], points[RIGHT_EYE_OUTER], points[MOUTH_CENTER]
    if not np.isfinite([left, right, mouth]).all():
        return None
    eyes = float(np.linalg.norm(right - left))
    eye_to_mouth = float(np.linalg.norm(mouth - (left + right) / 2))
    if eyes < MIN_EYE_DISTANCE_PX or eye_to_mouth < MIN_EYE_DISTANCE_PX:
        return None
    if mean_shape is None:  # no layout known: a box around the points plus the detector's margin
        lo, hi = np.nanmin(points, axis=0), np.nanmax(points, axis=0)
        size = hi - lo
        return Box(*(lo - DEFAULT_MARGIN * size), *(size * (1 + 2 * DEFAULT_MARGIN)))
    layout = np.asarray(mean_shape, np.float64)
    l_left, l_right, l_mouth = layout[LEFT_EYE_OUTER], layout[RIGHT_EYE_OUTER], layout[MOUTH_CENTER]
    width = eyes / float(np.linalg.norm(l_right - l_left))
    height = eye_to_mouth / float(np.linalg.norm(l_mouth - (l_left + l_right) / 2))
    centre = (left + right + mouth) / 3
    l_centre = (l_left + l_right + l_mouth) / 3
    return Box(centre[0] - l_centre[0] * width, centre[1] - l_centre[1] * height, width, height)


@dataclass
class Track:
    id: int
    crop: Box  # where the model looks in the next frame
    box: Box  # the last detector box
    smoother: OneEuroFilter
    missed: int = 0  # detection rounds in a row without a matching detection
    age: int = 0  # frames followed
    lost: bool = False  # its points stopped looking like a face; ends at the next detection unless matched


@dataclass(frozen=True)
class TrackedFace:
    id: int
    box: Box  # the last detector box
    crop: Box  # the region the model saw this frame
    points: np.ndarray  # (K, 2) frame pixels, smoothed when smoothing is on
    raw_points: np.ndarray  # (K, 2) frame pixels, as the model gave them


class FaceTracker:
    """Decides per frame which crops the model sees, and turns its points into tracked faces.

    Per frame: `crops = tracker.plan(frame, index)` then `faces = tracker.update(points, time_s)`
    with one (K, 2) point array per crop, in the same order.
    """

    def __init__(
        self, detect, mean_shape, params: TrackerParams = TrackerParams(), finder: str = "haar"
    ) -> None:
        self._detect = detect  # RGB frame -> list[Box]
        self.finder = finder  # whose box layout turns a detection into a crop (predict.detect.LAYOUTS)
        self.mean_shape = mean_shape
        self.params = params
        self.tracks: list[Track] = []
        self.next_id = 1
        self.detections = 0  # frames the detector ran on (for reports)
        self.cuts = 0
        self._last_small: np.ndarray | None = None
        self._planned: list[tuple[Track, Box]] = []
        self._force_detect = False

    def _is_cut(self, frame: np.ndarray) -> bool:
        import cv2

        small = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), CUT_SIZE, interpolation=cv2.INTER_AREA)
        previous, self._last_small = self._last_small, small
        if previous is None:
            return False
        return float(np.mean(np.abs(small.astype(np.int16) - previous))) > self.params.cut_threshold

    def _new_track(self, face: Box) -> Track:
        track = Track(
            self.next_id,
            crop_for_face(face, self.mean_shape, self.finder),
            face,
            OneEuroFilter(self.params.smoothing),
        )
        self.next_id += 1
        return track

    def plan(self, frame: np.ndarray, index: int) -> list[Box]:
        """The crops (frame pixels) the model must see in this frame."""
        cut = self._is_cut(frame)
        if cut:
            self.cuts += 1
            self.tracks = []
        if cut or self._force_detect or not self.tracks or index % self.params.detect_every == 0:
            self._match(self._detect(frame))
        self._planned = [(track, track.crop) for track in self.tracks if not track.lost]
        return [crop for _, crop in self._planned]

    def _match(self, detections: list[Box]) -> None:
        self.detections += 1
        self._force_detect = False
        crops = [crop_for_face(face, self.mean_shape, self.finder) for face in detections]
        # overlap with where the track looks now, or with where the detector last saw it: the
        # latter keeps an id even when a weak model lets the crop wander between detections
        pairs = sorted(
            (
                (max(iou(track.crop, crop), iou(track.box, face)), t, d)
                for t, track in enumerate(self.tracks)
                for d, (face, crop) in enumerate(zip(detections, crops, strict=True))
            ),
            reverse=True,
        )
        used_tracks: dict[int, int] = {}
        used_detections: set[int] = set()
        for overlap, t, d in pairs:
            if overlap < self.params.iou_threshold:
                break
            if t in used_tracks or d in used_detections:
                continue
            used_tracks[t] = d
            used_detections.add(d)
            track = self.tracks[t]
            if track.lost or iou(track.crop, crops[d]) < REANCHOR_IOU:
                track.crop = crops[d]  # the points had wandered off: start again from the detection
            track.box, track.missed, track.lost = detections[d], 0, False
        kept = []
        for t, track in enumerate(self.tracks):
            if t not in used_tracks:
                track.missed += 1
                duplicate = any(iou(track.crop, self.tracks[m].crop) > DUPLICATE_IOU for m in used_tracks)
                if track.lost or duplicate or track.missed > self.params.max_missed:
                    continue
            kept.append(track)
        kept += [self._new_track(face) for d, face in enumerate(detections) if d not in used_detections]
        self.tracks = kept

    def update(self, points: Sequence[np.ndarray], time_s: float) -> list[TrackedFace]:
        """Points the model gave for this frame's crops -> tracked (and smoothed) faces."""
        faces: list[TrackedFace] = []
        for (track, crop), raw in zip(self._planned, points, strict=True):
            raw = np.asarray(raw, np.float64)
            nxt = crop_from_points(raw, self.mean_shape)
            if nxt is None or not _similar_size(nxt, crop, self.params.max_crop_change):
                # lost: the points no longer describe a face of this size; the detector looks next
                # frame, and the track ends unless a detection takes it up again
                track.lost, self._force_detect = True, True
                continue
            track.crop, track.age = nxt, track.age + 1
            if self.params.smooth:
                smoothed = track.smoother(raw, time_s, scale=max(eye_distance(raw), 1.0))
            else:
                smoothed = raw
            faces.append(
                TrackedFace(track.id, track.box, crop, smoothed.astype(np.float32), raw.astype(np.float32))
            )
        self._planned = []
        return faces


def _similar_size(a: Box, b: Box, limit: float) -> bool:
    ratio = (a.width * a.height) / max(b.width * b.height, 1e-9)
    return 1 / limit**2 <= ratio <= limit**2
