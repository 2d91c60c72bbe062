"""Points are drawn where docs/DESIGN.md's frame puts them: (0, 0) is the top-left corner of the
top-left pixel, so pixel (i, j) covers [i, i+1) x [j, j+1) and its centre is (i + 0.5, j + 0.5)."""

from __future__ import annotations

import numpy as np
import pytest

from facekp_cli.data.preview import draw_tile
from facekp_cli.plots import draw_comparison, draw_keypoints


def _centroid(painted: np.ndarray) -> tuple[float, float]:
    """The ink's centre in the frame: the weighted mean of pixel centres."""
    weights = painted.astype(np.float64)
    ys, xs = np.mgrid[0 : painted.shape[0], 0 : painted.shape[1]] + 0.5
    return float((xs * weights).sum() / weights.sum()), float((ys * weights).sum() / weights.sum())


@pytest.mark.parametrize("point", [(20.0, 20.0), (20.5, 31.25), (33.75, 12.0)])
def test_draw_keypoints_centres_a_dot_on_the_point(point):
    black = np.zeros((48, 64, 3), np.uint8)
    canvas = draw_keypoints(black, [np.array([point])], color=(255, 255, 255))
    x, y = _centroid(canvas[..., 0])
    assert abs(x - point[0]) < 0.1 and abs(y - point[1]) < 0.1, ((x, y), point)


def test_draw_comparison_and_the_preview_tile_follow_the_same_frame():
    black = np.zeros((64, 64, 3), np.uint8)
    point = np.array([[30.0, 22.0]])
    truth_only = draw_comparison(black, np.full((1, 2), np.nan), point)
    x, y = _centroid(truth_only[..., 1])
    assert abs(x - 30.0) < 0.1 and abs(y - 22.0) < 0.1
    # the tile is 2x the image here: the point lands at twice its coordinates
    keypoints = np.full((14, 2), np.nan)
    keypoints[10] = point[0]  # nose tip: drawn in the centre colour, numbered "11" to its right
    tile = draw_tile(black, keypoints, tile=128)
    ink = (tile.astype(int).sum(axis=2) > 0)[:, :62]  # the disc, without the label beside it
    ink[:, : int(2 * 30.0) - 8] = False
    ys, xs = np.nonzero(ink)
    assert abs((xs + 0.5).mean() - 60.0) < 0.6 and abs((ys + 0.5).mean() - 44.0) < 0.6
