"""Metrics (docs/DESIGN.md, normative), all in original-image pixels.

Shapes: pred and gt are (N, 14, 2) pixel arrays, gt NaN where unlabelled; sizes is (N, 2) as
(width, height). Per-image values are NaN when an image has nothing to score.

Units, the same in every output (training summary, MLflow, `eval`'s table, report.json, the dvc
metrics file): NME, FR@0.10, PCK@0.05/0.10 in percent, the field's convention; MSE100 in squared
pixels of a 100x100 frame; AUC@0.10 as a fraction of 1 (1.0 = every image perfect). The helpers
below return fractions; `summarise` (and training's validation) turn them into those units.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

from facekp_cli.keypoints import LEFT_EYE_OUTER, NAMES, RIGHT_EYE_OUTER

FAILURE_THRESHOLD = 0.10


def _nanmean(values: np.ndarray, axis=None) -> np.ndarray | float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def mse100_per_image(pred: np.ndarray, gt: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Per image: errors scaled to a 100x100 frame per axis, squared, averaged over labelled coords."""
    scale = 100.0 / np.asarray(sizes, np.float64)[:, None, :]
    err = (np.asarray(pred, np.float64) - np.asarray(gt, np.float64)) * scale
    return _nanmean((err**2).reshape(len(err), -1), axis=1)


def interocular(gt: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners (points 5 and 10) per image; NaN if either is missing."""
    gt = np.asarray(gt, np.float64)
    return np.linalg.norm(gt[:, LEFT_EYE_OUTER] - gt[:, RIGHT_EYE_OUTER], axis=-1)


def point_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, 14) Euclidean error in pixels, NaN for unlabelled points."""
    return np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=-1)


def normalised_point_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, 14) errors divided by each image's inter-ocular distance."""
    iod = interocular(gt)
    iod = np.where(iod > 0, iod, np.nan)
    return point_errors(pred, gt) / iod[:, None]


def nme_per_image(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Mean normalised error over labelled points (a fraction; reports multiply by 100)."""
    return _nanmean(normalised_point_errors(pred, gt), axis=1)


def failure_rate(nme: np.ndarray, threshold: float = FAILURE_THRESHOLD) -> float:
    nme = nme[np.isfinite(nme)]
    return float(np.mean(nme > threshold)) if len(nme) else float("nan")


def ced(
    nme: np.ndarray, threshold: float = FAILURE_THRESHOLD, steps: int = 1001
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: (thresholds, share of images with NME <= t)."""
    nme = np.sort(nme[np.isfinite(nme)])
    thresholds = np.linspace(0.0, threshold, steps)
    if not len(nme):
        return thresholds, np.full_like(thresholds, np.nan)
    return thresholds, np.searchsorted(nme, thresholds, side="right") / len(nme)


def auc(nme: np.ndarray, threshold: float = FAILURE_THRESHOLD) -> float:
    """Area under the CED from 0 to `threshold`, divided by `threshold` (1.0 = every image perfect)."""
    thresholds, curve = ced(nme, threshold)
    return float(np.trapezoid(curve, thresholds) / threshold)


def pck(pred: np.ndarray, gt: np.ndarray, threshold: float) -> float:
    """Share of labelled points with error < threshold x inter-ocular distance."""
    errors = normalised_point_errors(pred, gt)
    errors = errors[np.isfinite(errors)]
    return float(np.mean(errors < threshold)) if len(errors) else float("nan")


@dataclass(frozen=True)
class MetricSummary:
    mse100: float
    nme: float  # percent
    fr10: float  # percent of images with NME > 0.10
    auc10: float  # fraction of 1
    pck05: float  # percent of points
    pck10: float  # percent of points
    per_point_nme: dict[str, float]  # percent
    images: int

    def to_dict(self) -> dict:
        return asdict(self)


def summarise(pred: np.ndarray, gt: np.ndarray, sizes: np.ndarray) -> MetricSummary:
    per_image_nme = nme_per_image(pred, gt)
    per_point = _nanmean(normalised_point_errors(pred, gt), axis=0) * 100.0
    return MetricSummary(
        mse100=float(_nanmean(mse100_per_image(pred, gt, sizes))),
        nme=float(_nanmean(per_image_nme) * 100.0),
        fr10=failure_rate(per_image_nme) * 100.0,
        auc10=auc(per_image_nme),
        pck05=pck(pred, gt, 0.05) * 100.0,
        pck10=pck(pred, gt, 0.10) * 100.0,
        per_point_nme={name: float(v) for name, v in zip(NAMES, per_point, strict=True)},
        images=len(gt),
    )


def mean_shape(train_keypoints: np.ndarray, train_sizes: np.ndarray) -> np.ndarray:
    """The training-set mean layout as (14, 2) fractions of image width and height."""
    relative = np.asarray(train_keypoints, np.float64) / np.asarray(train_sizes, np.float64)[:, None, :]
    return _nanmean(relative, axis=0)


def mean_shape_predictions(layout: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The mean layout scaled to each image: the baseline every report shows beside the model."""
    return (layout[None, :, :] * np.asarray(sizes, np.float64)[:, None, :]).astype(np.float32)
