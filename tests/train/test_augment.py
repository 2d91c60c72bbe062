"""Keypoint-aware augmentation: flips swap identities, points follow the pixels, NaN survives."""

from __future__ import annotations

import numpy as np
import pytest
from train_helpers import AUGMENT_OFF as OFF
from train_helpers import augment_example

from facekp_cli.data.augment import mask_far_outside
from facekp_cli.keypoints import FLIP_INDEX, NUM_KEYPOINTS
from facekp_cli.settings import AugmentSettings, Settings


def only(**kwargs) -> Settings:
    return Settings(augment=AugmentSettings(**{**OFF, **kwargs}))


def grid_points(width: int, height: int) -> np.ndarray:
    xs = np.linspace(0.2, 0.8, NUM_KEYPOINTS) * width
    ys = np.linspace(0.3, 0.7, NUM_KEYPOINTS)[::-1] * height
    return np.stack([xs, ys], axis=1).astype(np.float32)


def blob_centre(image: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of the non-zero pixels, in our frame (pixel centre = index + 0.5)."""
    gray = image.astype(np.float64).sum(axis=2)
    ys, xs = np.nonzero(gray > 0)
    weight = gray[ys, xs]
    return np.array([(xs * weight).sum() / weight.sum() + 0.5, (ys * weight).sum() / weight.sum() + 0.5])


def test_hflip_mirrors_points_and_swaps_left_right():
    width, height = 40, 30
    image = np.zeros((height, width, 3), np.uint8)
    image[5, 7] = 255  # pixel centre (7.5, 5.5)
    points = grid_points(width, height)
    points[2] = np.nan  # right_eyebrow_inner unlabelled -> left_eyebrow_inner after the flip

    out_image, out_points = augment_example(image, points, only(hflip_p=1.0), seed=0)

    assert out_image[5, width - 1 - 7].tolist() == [255, 255, 255]
    for k in range(NUM_KEYPOINTS):
        source = points[FLIP_INDEX[k]]
        expected = [width - source[0], source[1]]
        np.testing.assert_allclose(out_points[k], expected, atol=1e-4)
    assert np.isnan(out_points[1]).all() and np.isfinite(np.delete(out_points, 1, axis=0)).all()
    # left_eye_outer came from right_eye_outer: after the mirror it lies left of the right one again
    assert out_points[4, 0] < out_points[9, 0]


def test_hflip_probability_zero_leaves_everything():
    image = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    points = grid_points(24, 24)
    out_image, out_points = augment_example(image, points, only(), seed=1)
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_allclose(out_points, points, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_points_follow_pixels_under_rotation_scale_shift_and_perspective(seed):
    size = 64
    points = grid_points(size, size)
    pixel = (31, 20)  # row, column; point 0 sits on its centre
    points[0] = [pixel[1] + 0.5, pixel[0] + 0.5]
    image = np.zeros((size, size, 3), np.uint8)
    image[pixel] = 255
    settings = only(affine_p=1.0, perspective_p=1.0, rotate_deg=30, scale=0.2, shift=0.05, keep_margin=5)

    out_image, out_points = augment_example(image, points, settings, seed=seed)

    # The bilinear warp spreads the dot over a few pixels; its centre is where point 0 must be.
    np.testing.assert_allclose(out_points[0], blob_centre(out_image), atol=0.35)
    assert not np.allclose(out_points, points, atol=0.5)


def test_same_seed_same_result_and_nan_survives_the_full_pipeline():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    points = grid_points(48, 48)
    points[10] = np.nan
    settings = Settings()  # every transform at its default probability
    a_image, a_points = augment_example(image, points, settings, seed=7)
    b_image, b_points = augment_example(image, points, settings, seed=7)
    np.testing.assert_array_equal(a_image, b_image)
    np.testing.assert_array_equal(a_points, b_points)
    assert a_image.shape == image.shape and a_image.dtype == np.uint8
    results = [augment_example(image, points, settings, seed=s)[1] for s in range(8)]
    # NaN comes back NaN wherever the flip moved it (nose_tip maps onto itself)
    assert all(np.isnan(r[10]).all() and np.isfinite(np.delete(r, 10, axis=0)).all() for r in results)
    assert len({r.tobytes() for r in results}) > 1


def test_points_pushed_out_of_frame_are_kept_exactly_within_the_margin():
    size = 64
    image = np.zeros((size, size, 3), np.uint8)
    image[31, 31] = 255
    points = grid_points(size, size)
    points[0] = [31.5, 31.5]
    points[1] = [1.0, 2.0]  # near the corner: a shift of more than 1 px left pushes it out
    settings = only(affine_p=1.0, rotate_deg=0, scale=0, shift=0.3, keep_margin=10)
    pushed_out = 0
    for seed in range(12):
        out_image, out_points = augment_example(image, points, settings, seed=seed)
        shift = blob_centre(out_image) - points[0]
        # a pure translation moves every point by the same vector, inside the frame or not
        np.testing.assert_allclose(out_points - points, np.broadcast_to(shift, points.shape), atol=0.3)
        pushed_out += bool((out_points[1] < 0).any())
    assert pushed_out > 0


def test_points_beyond_the_margin_are_masked():
    points = np.array([[-5.0, 10.0], [-30.0, 10.0], [50.0, 130.0], [50.0, 99.0]] + [[1, 1]] * 10, np.float32)
    masked = mask_far_outside(points, width=100, height=100, margin=0.25)
    assert np.isfinite(masked[0]).all() and np.isfinite(masked[3]).all()
    assert np.isnan(masked[1]).all() and np.isnan(masked[2]).all()

    settings = only(affine_p=1.0, rotate_deg=0, scale=0, shift=0.3, keep_margin=0.0)
    image = np.zeros((64, 64, 3), np.uint8)
    near_edge = grid_points(64, 64)
    near_edge[1] = [1.0, 2.0]
    outcomes = [augment_example(image, near_edge, settings, seed=s)[1] for s in range(12)]
    for out in outcomes:
        inside = np.isfinite(out).all(axis=1)
        assert ((out[inside] >= 0) & (out[inside] <= 64)).all()
    assert any(np.isnan(out[1]).all() for out in outcomes)


def test_disabled_augmentation_is_identity():
    image = np.zeros((20, 20, 3), np.uint8)
    points = grid_points(20, 20)
    settings = Settings(augment=AugmentSettings(enabled=False))
    out_image, out_points = augment_example(image, points, settings, seed=0)
    assert out_image is image
    np.testing.assert_array_equal(out_points, points)
