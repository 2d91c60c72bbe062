"""Pictures for people: keypoints drawn on images, the CED curve and per-point errors (PNG).

Figures use matplotlib's object API with the Agg canvas, so nothing depends on a display or on
the global pyplot backend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from facekp_cli.atomic import atomic_path

PRED_COLOR = (230, 40, 40)
TRUTH_COLOR = (40, 200, 60)
BOX_COLOR = (40, 120, 255)
SHIFT = 4  # OpenCV draws with this many fractional bits: a point lands where it is, not on a pixel


def cv_point(x: float, y: float) -> tuple[int, int]:
    """A point of facekp's frame (origin at the top-left corner of the top-left pixel, docs/DESIGN.md)
    as OpenCV's fixed-point drawing position (origin at the top-left pixel's centre, SHIFT bits)."""
    return round((x - 0.5) * (1 << SHIFT)), round((y - 0.5) * (1 << SHIFT))


def _radius(image: np.ndarray) -> int:
    return max(1, round(min(image.shape[:2]) / 80))


def draw_keypoints(
    image: np.ndarray,
    point_sets: Sequence[np.ndarray],
    *,
    boxes: Sequence = (),
    color: tuple[int, int, int] = PRED_COLOR,
) -> np.ndarray:
    """A copy of an RGB image with each (K, 2) point set drawn as dots (NaN points skipped)."""
    import cv2

    canvas = np.ascontiguousarray(image.copy())
    radius = _radius(canvas)
    for box in boxes:
        top_left = (round(box.x), round(box.y))
        bottom_right = (round(box.x + box.width), round(box.y + box.height))
        cv2.rectangle(canvas, top_left, bottom_right, BOX_COLOR, max(1, radius // 2), cv2.LINE_AA)
    for points in point_sets:
        for x, y in np.asarray(points, np.float64):
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(canvas, cv_point(x, y), radius << SHIFT, color, -1, cv2.LINE_AA, SHIFT)
    return canvas


def draw_comparison(image: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Truth in green, prediction in red, a line from each true point to its prediction."""
    import cv2

    canvas = draw_keypoints(image, [truth], color=TRUTH_COLOR)
    for (px, py), (tx, ty) in zip(np.asarray(pred, np.float64), np.asarray(truth, np.float64), strict=True):
        if np.isfinite([px, py, tx, ty]).all():
            cv2.line(canvas, cv_point(tx, ty), cv_point(px, py), PRED_COLOR, 1, cv2.LINE_AA, SHIFT)
    return draw_keypoints(canvas, [pred], color=PRED_COLOR)


def save_image(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write an RGB array as JPEG or PNG (by the file's extension), atomically."""
    from PIL import Image

    path = Path(path)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return path


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save_figure(figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def ced_plot(path: str | os.PathLike[str], curves: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Cumulative error distribution, one line per {label: (thresholds, share)}; NME in %."""
    figure = _figure(5.5, 4.0)
    axes = figure.add_subplot()
    for label, (thresholds, share) in curves.items():
        axes.plot(np.asarray(thresholds) * 100.0, np.asarray(share) * 100.0, label=label)
    axes.set_xlabel("NME (% of outer-eye-corner distance)")
    axes.set_ylabel("images with NME <= x (%)")
    axes.set_title("Cumulative error distribution")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")  # curves rise to the right
    return _save_figure(figure, path)


def per_point_plot(
    path: str | os.PathLike[str], names: Sequence[str], series: Mapping[str, Sequence[float]]
) -> Path:
    """Horizontal bars of per-point NME (%), one bar group per point, one colour per series."""
    figure = _figure(6.5, 0.32 * len(names) + 1.4)
    axes = figure.add_subplot()
    positions = np.arange(len(names))
    height = 0.8 / max(1, len(series))
    for index, (label, values) in enumerate(series.items()):
        axes.barh(positions + index * height, np.asarray(values, np.float64), height, label=label)
    axes.set_yticks(positions + height * (len(series) - 1) / 2, list(names))
    axes.invert_yaxis()
    axes.set_xlabel("NME (% of outer-eye-corner distance)")
    axes.set_title("Error per keypoint")
    axes.grid(axis="x", alpha=0.3)
    figure.legend(loc="outside lower center", ncols=len(series))  # never over the bars
    return _save_figure(figure, path)
