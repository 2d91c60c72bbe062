"""Property tests (hypothesis) for the gt.csv round trip and the coordinate transforms.

Frame (docs/DESIGN.md): x right, y down, origin at the top-left corner of the top-left pixel, so the
centre of pixel (i, j) is (j + 0.5, i + 0.5). Each transform of points must agree with what the
same transform does to pixels, within 1e-3 px unless a resampling tolerance is derived below.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from facekp_cli.data.augment import _PIXEL_CENTRE, hflip
from facekp_cli.data.format import format_gt_csv, parse_gt_csv, read_gt_csv, write_gt_csv
from facekp_cli.frame import normalised_to_points, points_to_normalised, resize_to_input
from facekp_cli.keypoints import FLIP_INDEX, NUM_KEYPOINTS

PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
TOL_PX = 1e-3

# --- gt.csv: write then read gives the same names and points ------------------------------------

_name_chars = st.sampled_from("abcXYZ019_-.,' \"éü")
_segment = st.text(_name_chars, min_size=1, max_size=12).filter(
    lambda s: s == s.strip() and s not in (".", "..")
)
_filename = st.lists(_segment, min_size=1, max_size=2).map("/".join)


@st.composite
def labelled_rows(draw):
    names = draw(st.lists(_filename, min_size=0, max_size=8, unique_by=lambda n: n.strip()))
    coords = draw(
        st.lists(
            st.lists(
                st.one_of(st.just(None), st.tuples(*[st.floats(0, 8192, allow_nan=False)] * 2)),
                min_size=NUM_KEYPOINTS,
                max_size=NUM_KEYPOINTS,
            ),
            min_size=len(names),
            max_size=len(names),
        )
    )
    points = np.array([[p if p is not None else (np.nan, np.nan) for p in row] for row in coords], np.float64)
    return names, points.reshape(len(names), NUM_KEYPOINTS, 2)


@PROPERTY
@given(rows=labelled_rows())
def test_gt_csv_round_trip(tmp_path, rows):
    names, points = rows
    path = tmp_path / "gt.csv"
    write_gt_csv(path, names, points)
    back_names, back = read_gt_csv(path)
    assert back_names == names
    assert back.shape == points.shape
    assert np.array_equal(np.isnan(back), np.isnan(points))
    labelled = ~np.isnan(points)
    assert np.all(np.abs(back[labelled] - points[labelled]) <= TOL_PX)


@PROPERTY
@given(rows=labelled_rows())
def test_gt_csv_text_round_trip_survives_crlf_and_bom(rows):
    names, points = rows
    text = "\ufeff" + format_gt_csv(names, points).replace("\n", "\r\n")
    back_names, back = parse_gt_csv(text, "gt.csv")
    assert back_names == names
    assert np.array_equal(np.isnan(back), np.isnan(points))


# --- pixels <-> normalised network coordinates -----------------------------------------------


@st.composite
def sized_points(draw, max_side: int = 8192):
    width = draw(st.integers(8, max_side))
    height = draw(st.integers(8, max_side))
    xs = draw(st.lists(st.floats(0, width), min_size=NUM_KEYPOINTS, max_size=NUM_KEYPOINTS))
    ys = draw(st.lists(st.floats(0, height), min_size=NUM_KEYPOINTS, max_size=NUM_KEYPOINTS))
    return width, height, np.stack([xs, ys], axis=1)


@PROPERTY
@given(case=sized_points())
def test_points_normalise_and_back(case):
    """Images up to 8192 px a side (MAX_PIXELS allows ~7000 x 7000) keep 1e-3 px in float32."""
    width, height, points = case
    normalised = points_to_normalised(points, width, height)
    assert np.all(np.abs(normalised) <= 1 + 1e-6)
    back = normalised_to_points(normalised, width, height)
    assert np.abs(back - points).max() <= TOL_PX


@PROPERTY
@given(cases=st.lists(sized_points(max_side=2000), min_size=1, max_size=5))
def test_batch_back_conversion_uses_each_images_own_size(cases):
    widths = np.array([c[0] for c in cases])
    heights = np.array([c[1] for c in cases])
    points = np.stack([c[2] for c in cases])
    normalised = np.stack([points_to_normalised(c[2], c[0], c[1]) for c in cases])
    assert np.abs(normalised_to_points(normalised, widths, heights) - points).max() <= TOL_PX


def test_nan_stays_nan():
    points = np.full((NUM_KEYPOINTS, 2), np.nan)
    assert np.isnan(normalised_to_points(points_to_normalised(points, 50, 40), 50, 40)).all()


def test_frame_corners():
    """Origin at the corner of the top-left pixel: (0, 0) -> (-1, -1), (W, H) -> (1, 1)."""
    corners = np.array([[0.0, 0.0], [100.0, 60.0], [50.0, 30.0]])
    assert np.allclose(points_to_normalised(corners, 100, 60), [[-1, -1], [1, 1], [0, 0]])


# --- resizing: a bright pixel lands where the points map puts its centre -------------------------


def _footprint(p: int, n: int, m: int) -> np.ndarray:
    """Weights of the m output pixels for source pixel p along one axis (n -> m), in OUR frame.

    Bilinear (enlarging): output pixel j samples source x = (j + 0.5) n/m, so it weighs pixel p by
    the tent 1 - |x - (p + 0.5)|. Area (shrinking): output pixel j averages the source interval
    [j n/m, (j + 1) n/m), so it weighs pixel p by the overlap with [p, p + 1). Both footprints are
    centred, in continuous coordinates, exactly at the mapped point (p + 0.5) m/n; sampling them
    at output pixel centres shifts their centroid by the amount this model computes (up to half
    an output pixel when shrinking), which is the resampling tolerance, made exact.
    """
    j = np.arange(m)
    if n > m:
        return np.clip(np.minimum((j + 1) * n / m, p + 1) - np.maximum(j * n / m, p), 0, None)
    return np.clip(1 - np.abs((j + 0.5) * n / m - (p + 0.5)), 0, None)


@PROPERTY
@given(
    size=st.sampled_from([32, 64, 96]),
    width=st.integers(8, 300),
    height=st.integers(8, 300),
    fx=st.floats(0, 1, exclude_max=True),
    fy=st.floats(0, 1, exclude_max=True),
)
def test_resize_moves_a_bright_pixel_as_the_points_map_predicts(size, width, height, fx, fy):
    px, py = int(fx * width), int(fy * height)
    # Where the network frame puts the pixel's centre, in output pixels.
    mapped = (points_to_normalised(np.array([[px + 0.5, py + 0.5]]), width, height)[0] + 1) / 2 * size
    # OpenCV clamps at the border; keep the footprint (one source pixel, in output pixels) inside.
    reach_x, reach_y = max(size / width, 1) + 1, max(size / height, 1) + 1
    assume(reach_x <= mapped[0] <= size - reach_x and reach_y <= mapped[1] <= size - reach_y)
    image = np.zeros((height, width, 3), np.float32)  # float: no 8-bit rounding of the weights
    image[py, px] = 1.0
    out = resize_to_input(image, size)[..., 0].astype(np.float64)
    centres = np.arange(size) + 0.5
    got = np.array([(out.sum(0) * centres).sum(), (out.sum(1) * centres).sum()]) / out.sum()
    wx, wy = _footprint(px, width, size), _footprint(py, height, size)
    model = np.array([(wx * centres).sum() / wx.sum(), (wy * centres).sum() / wy.sum()])
    assert np.abs(got - model).max() <= TOL_PX
    assert np.abs(model - mapped).max() < 0.5  # sampling shifts a centroid by under half a pixel


# --- horizontal flip: x -> W - x and left/right swap ------------------------------------------------


@PROPERTY
@given(case=sized_points(max_side=200))
def test_hflip_twice_is_the_identity(case):
    width, height, points = case
    image = np.zeros((height, width, 3), np.uint8)
    _, once = hflip(image, points)
    _, twice = hflip(image[:, ::-1], once)
    assert np.abs(twice - points).max() <= TOL_PX


@PROPERTY
@given(width=st.integers(8, 200), height=st.integers(8, 200), data=st.data())
def test_hflip_moves_points_with_their_pixels_and_swaps_sides(width, height, data):
    cols = data.draw(st.lists(st.integers(0, width - 1), min_size=NUM_KEYPOINTS, max_size=NUM_KEYPOINTS))
    rows = data.draw(st.lists(st.integers(0, height - 1), min_size=NUM_KEYPOINTS, max_size=NUM_KEYPOINTS))
    points = np.stack([np.array(cols) + 0.5, np.array(rows) + 0.5], axis=1)
    image = np.zeros((height, width, 3), np.uint8)
    k = data.draw(st.integers(0, NUM_KEYPOINTS - 1))
    image[rows[k], cols[k]] = 255
    flipped_image, flipped = hflip(image, points)
    assert np.allclose(flipped[:, 0], width - points[list(FLIP_INDEX), 0])
    assert np.allclose(flipped[:, 1], points[list(FLIP_INDEX), 1])
    y, x = np.unravel_index(flipped_image[..., 0].argmax(), flipped_image.shape[:2])
    # point k became point FLIP_INDEX[k], and it sits on the centre of the moved bright pixel
    assert np.allclose(flipped[FLIP_INDEX[k]], (x + 0.5, y + 0.5))


# --- rotation about the centre and back ------------------------------------------------------------


def _rotate(image: np.ndarray, points: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """albumentations' Affine, as data/augment.py uses it, with the same half-pixel frame shift."""
    import albumentations as A
    import cv2

    transform = A.Compose(
        [A.Affine(rotate=(degrees, degrees), border_mode=cv2.BORDER_CONSTANT, fill=0, p=1)],
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
    )
    out = transform(image=image, keypoints=points - _PIXEL_CENTRE)
    return out["image"], np.asarray(out["keypoints"], np.float64)[:, :2] + _PIXEL_CENTRE


def _about_centre(points: np.ndarray, width: int, height: int, degrees: float) -> np.ndarray:
    """Counter-clockwise as displayed (y points down) about the image centre (W/2, H/2)."""
    t = np.deg2rad(degrees)
    rotation = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    centre = np.array([width / 2, height / 2])
    return (points - centre) @ rotation.T + centre


@settings(max_examples=30, deadline=None)
@given(case=sized_points(max_side=160), degrees=st.floats(-180, 180))
def test_rotation_about_the_centre_and_back(case, degrees):
    width, height, points = case
    image = np.zeros((height, width, 3), np.uint8)
    _, turned = _rotate(image, points, degrees)
    assert np.abs(turned - _about_centre(points, width, height, degrees)).max() <= TOL_PX
    _, back = _rotate(image, turned, -degrees)
    assert np.abs(back - points).max() <= TOL_PX


@pytest.mark.parametrize("degrees", [-150.0, -33.0, 12.5, 90.0])
def test_rotated_pixels_follow_the_rotated_point(degrees):
    """A 3x3 bright square's centroid after bilinear warping lies within 0.1 px of its rotated centre
    (bilinear resampling of a small square biases its centroid by a few hundredths of a pixel)."""
    width, height = 61, 47
    image = np.zeros((height, width, 3), np.float32)
    image[29:32, 20:23] = 1.0  # centre pixel (21, 30) -> point (21.5, 30.5)
    turned_image, turned = _rotate(image, np.array([[21.5, 30.5]]), degrees)
    mass = turned_image[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0:height, 0:width]
    centroid = np.array([(mass * (xs + 0.5)).sum(), (mass * (ys + 0.5)).sum()]) / mass.sum()
    assert np.abs(centroid - turned[0]).max() < 0.1
