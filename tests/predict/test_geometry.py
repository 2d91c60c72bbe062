"""Crop geometry of `--detect` and the path expansion of `infer` (pure functions, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from facekp_cli.errors import DataError
from facekp_cli.keypoints import LEFT_EYE_OUTER, NAMES, RIGHT_EYE_OUTER
from facekp_cli.predict.detect import HAAR_LAYOUT, Box, crop_for_face, cut
from facekp_cli.predict.sources import find_images


def test_crop_puts_the_haar_anchors_where_training_put_the_points():
    layout = np.full((14, 2), 0.5)
    layout[LEFT_EYE_OUTER] = (0.3, 0.42)
    layout[RIGHT_EYE_OUTER] = (0.7, 0.42)
    layout[NAMES.index("mouth_center")] = (0.5, 0.78)
    face = Box(100, 50, 200, 220)
    crop = crop_for_face(face, layout.tolist())

    def in_crop(fx, fy):  # a point given as fractions of the face box -> fractions of the crop
        x, y = face.x + fx * face.width, face.y + fy * face.height
        return (x - crop.x) / crop.width, (y - crop.y) / crop.height

    assert in_crop(HAAR_LAYOUT["eye_outer_left_x"], HAAR_LAYOUT["eye_y"]) == pytest.approx((0.3, 0.42))
    assert in_crop(HAAR_LAYOUT["eye_outer_right_x"], HAAR_LAYOUT["eye_y"]) == pytest.approx((0.7, 0.42))
    assert in_crop(0.5, HAAR_LAYOUT["mouth_y"])[1] == pytest.approx(0.78)


def test_cut_pads_outside_the_photo_and_keeps_whole_pixels():
    image = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    part, box = cut(image, Box(-5.2, 12.6, 10.4, 12.0))
    assert (box.x, box.y, box.width, box.height) == (-5, 13, 10, 12)
    assert part.shape == (12, 10, 3)
    assert (part[:7, 5:] == image[13:20, 0:5]).all()  # the part inside the photo is the photo
    assert (part[:7, :5] == image[13:20, :1]).all()  # left padding repeats the edge column


def test_find_images_reports_missing_and_empty_inputs(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jpg: no such file"):
        find_images([tmp_path / "nope.jpg"])
    (tmp_path / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.PNG").write_bytes(b"x")
    with pytest.raises(DataError, match=r"no images found.*--recursive"):
        find_images([tmp_path])
    (found,) = find_images([tmp_path, tmp_path / "sub" / "a.PNG"], recursive=True)  # duplicates once
    assert found.name == "sub/a.PNG"
