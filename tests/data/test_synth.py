"""The synthetic generator: format, exact labels, determinism, variation and the difficulty floor."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from facekp_cli.data import synth
from facekp_cli.data.format import read_split
from facekp_cli.data.images import decode_image
from facekp_cli.data.synth_face import sample_face
from facekp_cli.errors import DataError
from facekp_cli.metrics import mean_shape, mean_shape_predictions, mse100_per_image


def _digest(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.*")
    }


def test_tiny_dataset_is_in_the_normative_format(tiny_dataset):
    train, test = read_split(tiny_dataset / "train"), read_split(tiny_dataset / "test")
    assert (len(train), len(test)) == (36, 12)
    sizes = set()
    for split in (train, test):
        assert np.isfinite(split.keypoints).all()
        for i in range(len(split)):
            image = decode_image(split.image_path(i))
            h, w = image.shape[:2]
            sizes.add((w, h))
            assert synth.MIN_SIDE <= w <= synth.MAX_SIDE and synth.MIN_SIDE <= h <= synth.MAX_SIDE
            pts = split.keypoints[i]
            assert (pts >= 0).all() and (pts[:, 0] <= w).all() and (pts[:, 1] <= h).all()
            # left points lie left of their partners on these upright-ish faces
            assert pts[4, 0] < pts[9, 0] and pts[11, 0] < pts[13, 0]
    assert any(w != h for w, h in sizes), "crops are not always square"
    assert len({w for w, _ in sizes}) > 10, "crop sizes vary"


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path, monkeypatch):
    one = synth.synthesize(tmp_path / "one", 12, seed=3, workers=1).out_dir
    monkeypatch.setattr(synth, "_IN_PROCESS_BELOW", 0)  # force the process pool even for 12 images
    two = synth.synthesize(tmp_path / "two", 12, seed=3, workers=2).out_dir
    assert _digest(one) == _digest(two)
    other = synth.synthesize(tmp_path / "other", 12, seed=4, workers=1).out_dir
    assert _digest(other)["train/gt.csv"] != _digest(one)["train/gt.csv"]


def test_labels_are_the_drawn_geometry():
    """Each label is the projection of the exact curve end or centre that is drawn."""
    for index in range(20):
        rng = synth.image_rng(0, index)
        width, height = synth._crop_size(rng)
        face = sample_face(rng)
        pose, labels = synth._sample_pose(rng, face, width, height)
        project = pose.project
        left_eye, right_eye = face.eyes
        upper = (len(left_eye) + 2) // 2  # the polygon is the upper lid (outer -> inner) then the lower lid
        np.testing.assert_allclose(labels[4], project(left_eye[0]), atol=1e-9)
        np.testing.assert_allclose(labels[6], project(left_eye[upper - 1]), atol=1e-9)
        np.testing.assert_allclose(labels[9], project(right_eye[0]), atol=1e-9)
        np.testing.assert_allclose(labels[7], project(right_eye[upper - 1]), atol=1e-9)
        # brows: polygon starts at the inner end; the outer end follows the top edge
        for brow, inner, outer in ((face.brows[0], 1, 0), (face.brows[1], 2, 3)):
            np.testing.assert_allclose(labels[inner], project(brow[0]), atol=1e-9)
            assert np.min(np.linalg.norm(project(brow) - labels[outer], axis=1)) < 1e-9
        lips = project(face.lips)
        np.testing.assert_allclose(labels[11], lips[0], atol=1e-9)
        assert np.min(np.linalg.norm(lips - labels[13], axis=1)) < 1e-9
        # pupils: inside their eye opening's bounding box
        for k, eye in ((5, left_eye), (8, right_eye)):
            box = project(eye)
            assert (labels[k] >= box.min(axis=0) - 1).all() and (labels[k] <= box.max(axis=0) + 1).all()


def test_pupil_is_drawn_dark_at_its_label():
    """Where nothing covers the eye, the pixel under each pupil label is the dark pupil."""
    darker = 0
    for index in range(30):
        sample = synth.render_image(0, index)
        gray = sample.image.mean(axis=2)
        for k in (5, 8):
            x, y = sample.keypoints[k]
            at_label = gray[int(y), int(x)]
            darker += at_label < np.median(gray)
    assert darker >= 45, darker  # 60 pupils; a few are under sunglasses, hands or shadows


def test_mean_shape_baseline_is_above_the_difficulty_floor():
    keypoints, sizes = [], []
    for index in range(600):
        rng = synth.image_rng(0, index)
        width, height = synth._crop_size(rng)
        face = sample_face(rng)
        keypoints.append(synth._sample_pose(rng, face, width, height)[1])
        sizes.append((width, height))
    keypoints, sizes = np.array(keypoints), np.array(sizes, float)
    layout = mean_shape(keypoints[:500], sizes[:500])
    score = mse100_per_image(mean_shape_predictions(layout, sizes[500:]), keypoints[500:], sizes[500:]).mean()
    assert score >= 25, score


def test_refuses_to_overwrite_a_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a dataset folder"):
        synth.synthesize(tmp_path, 4)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_replaces_an_existing_dataset(tmp_path):
    root = tmp_path / "faces_data"
    synth.synthesize(root, 10, seed=1)
    result = synth.synthesize(root, 6, seed=2, test_fraction=0.5)
    assert (result.train_count, result.test_count) == (3, 3)
    assert len(list((root / "train" / "images").iterdir())) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
