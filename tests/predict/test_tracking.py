"""Face ids across frames: IoU matching, the crop followed from the points, lost faces and cuts.

The detector is an ordinary function returning the boxes each frame really has (the scripted
scene below), and the "model" puts the mean shape exactly into each crop it is shown, so every
rule of the tracker is checked without the noise of a real detector or network.
"""

from __future__ import annotations

import numpy as np

from facekp_cli.predict.detect import Box, crop_for_face, iou
from facekp_cli.video.face_tracks import FaceTracker, TrackerParams, crop_from_points

# a plausible training-set mean shape (fractions of the crop), as checkpoints carry it
MEAN_SHAPE = [
    [0.22, 0.30], [0.42, 0.29], [0.58, 0.29], [0.78, 0.30], [0.27, 0.40], [0.35, 0.40], [0.43, 0.40],
    [0.57, 0.40], [0.65, 0.40], [0.73, 0.40], [0.50, 0.58], [0.36, 0.74], [0.50, 0.76], [0.64, 0.74],
]  # fmt: skip


def points_in(crop: Box) -> np.ndarray:
    return np.asarray(MEAN_SHAPE) * (crop.width, crop.height) + (crop.x, crop.y)


class Scene:
    """Frames as plain grey images; the faces on them are the boxes the detector reports."""

    def __init__(self, boxes_per_frame: list[list[Box]], cut_at: int | None = None) -> None:
        self.boxes, self.cut_at, self.calls = boxes_per_frame, cut_at, 0
        self.current = 0

    def frame(self, index: int) -> np.ndarray:
        self.current = index
        level = 200 if self.cut_at is not None and index >= self.cut_at else 60
        return np.full((240, 320, 3), level, np.uint8)

    def detect(self, frame: np.ndarray) -> list[Box]:
        self.calls += 1
        return self.boxes[self.current]


def run(scene: Scene, frames: int, params: TrackerParams = TrackerParams(smooth=False)):
    tracker = FaceTracker(scene.detect, MEAN_SHAPE, params)
    ids = []
    for index in range(frames):
        crops = tracker.plan(scene.frame(index), index)
        faces = tracker.update([points_in(c) for c in crops], index / 25)
        ids.append(sorted(f.id for f in faces))
    return tracker, ids


def test_crop_from_points_inverts_the_crop_layout():
    crop = Box(37.5, 12.0, 88.0, 95.0)
    found = crop_from_points(points_in(crop), MEAN_SHAPE)
    assert np.allclose([found.x, found.y, found.width, found.height], [37.5, 12.0, 88.0, 95.0])
    # rolled 30 degrees about its centre, the face keeps its size
    angle = np.radians(30)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.array([crop.x + crop.width / 2, crop.y + crop.height / 2])
    rolled = crop_from_points((points_in(crop) - centre) @ rot.T + centre, MEAN_SHAPE)
    assert np.isclose(rolled.width, 88.0) and np.isclose(rolled.height, 95.0)
    assert crop_from_points(np.full((14, 2), np.nan), MEAN_SHAPE) is None


def test_iou():
    assert iou(Box(0, 0, 10, 10), Box(0, 0, 10, 10)) == 1.0
    assert iou(Box(0, 0, 10, 10), Box(5, 0, 10, 10)) == 50 / 150
    assert iou(Box(0, 0, 10, 10), Box(20, 20, 5, 5)) == 0.0


def test_a_moving_face_keeps_its_id_and_the_detector_runs_every_n_frames():
    boxes = [[Box(40 + 3 * t, 60, 80, 80)] for t in range(30)]
    tracker, ids = run(Scene(boxes), 30, TrackerParams(detect_every=5, smooth=False))
    assert ids == [[1]] * 30
    assert tracker.detections == 6  # frames 0, 5, ..., 25


def test_two_faces_get_two_ids_and_a_new_face_a_new_one():
    left, right, late = Box(20, 60, 70, 70), Box(200, 70, 70, 70), Box(120, 150, 60, 60)
    boxes = [[left, right] if t < 10 else [left, right, late] for t in range(20)]
    _, ids = run(Scene(boxes), 20, TrackerParams(detect_every=5, smooth=False))
    assert ids[:10] == [[1, 2]] * 10
    assert ids[10:] == [[1, 2, 3]] * 10  # the newcomer is found at the next detection frame


def test_a_face_that_leaves_ends_after_max_missed_detection_rounds():
    face = Box(40, 60, 80, 80)
    boxes = [[face] if t < 5 else [] for t in range(30)]
    tracker, ids = run(Scene(boxes), 30, TrackerParams(detect_every=5, max_missed=1, smooth=False))
    # missed at frame 5 (kept), missed again at frame 10 (ended)
    assert ids[:10] == [[1]] * 10 and ids[10:] == [[]] * 20
    assert tracker.tracks == []


def test_a_scene_cut_ends_every_id_even_where_a_face_stays():
    face = Box(40, 60, 80, 80)
    boxes = [[face] for _ in range(12)]
    tracker, ids = run(Scene(boxes, cut_at=7), 12, TrackerParams(detect_every=100, smooth=False))
    assert ids[:7] == [[1]] * 7 and ids[7:] == [[2]] * 5
    assert tracker.cuts == 1


def test_points_that_stop_being_a_face_force_a_detection():
    face = Box(40, 60, 80, 80)
    scene = Scene([[face]] * 6)
    tracker = FaceTracker(scene.detect, MEAN_SHAPE, TrackerParams(detect_every=100, smooth=False))
    tracker.update([points_in(c) for c in tracker.plan(scene.frame(0), 0)], 0.0)
    crops = tracker.plan(scene.frame(1), 1)
    assert tracker.update([np.full((14, 2), 5.0)], 0.04) == []  # all points on one spot: lost
    calls = scene.calls
    crops = tracker.plan(scene.frame(2), 2)
    assert scene.calls == calls + 1  # looked again at once, not 100 frames later
    (found,) = tracker.update([points_in(c) for c in crops], 0.08)
    assert found.id == 1  # and the detection took the same face up again
    assert iou(found.crop, crop_for_face(face, MEAN_SHAPE)) > 0.99
