"""Aligned face crops: the similarity transform that puts a face's eyes and mouth on a template.

Recognition models (ArcFace and its kin) expect faces cut the same way: eyes level and at fixed
places, the mouth below them. The template here is the widely used 112x112 ArcFace layout reduced
to three anchors: the two eye centres (the mean of each eye's outer and inner corner; steadier
than a pupil) and the mouth centre (the mean of both mouth corners and its centre point). The
transform is the least-squares similarity (rotation, one scale, shift) from the three face points
to the template (Umeyama 1991), so a face is never sheared or stretched. `margin` adds room
around the template: 0 is the ArcFace crop, 0.25 a quarter of the face's width on each side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facekp_cli.keypoints import (
    LEFT_EYE_INNER,
    LEFT_EYE_OUTER,
    MOUTH_CENTER,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    RIGHT_EYE_INNER,
    RIGHT_EYE_OUTER,
)

# ArcFace 112x112: left eye (38.2946, 51.6963), right eye (73.5318, 51.5014), mouth corners
# (41.5493, 92.3655) and (70.7299, 92.2041): the mouth centre is their mean. As fractions of 112.
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.1396, 92.2848]], np.float64) / 112.0
_EYE_LEFT = [LEFT_EYE_OUTER, LEFT_EYE_INNER]
_EYE_RIGHT = [RIGHT_EYE_INNER, RIGHT_EYE_OUTER]
_MOUTH = [MOUTH_LEFT, MOUTH_CENTER, MOUTH_RIGHT]


def anchors(points: np.ndarray) -> np.ndarray:
    """(14, 2) keypoints -> (3, 2): left eye centre, right eye centre, mouth centre (NaN-aware)."""
    points = np.asarray(points, np.float64)
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN group gives NaN, checked later
            return np.stack([np.nanmean(points[idx], axis=0) for idx in (_EYE_LEFT, _EYE_RIGHT, _MOUTH)])


def template_points(size: int, margin: float) -> np.ndarray:
    """The template anchors in a size x size crop with `margin` (fraction of the face) on each side."""
    return (0.5 + (TEMPLATE - 0.5) / (1.0 + 2.0 * margin)) * size


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 least-squares similarity mapping source (N, 2) onto target (N, 2) (Umeyama, no reflection)."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    s, t = source - mu_s, target - mu_t
    variance = (s**2).sum() / len(s)
    if variance <= 1e-12:
        raise ValueError("the source points coincide")
    covariance = t.T @ s / len(s)
    u, d, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign)) / variance
    linear = scale * rotation
    return np.hstack([linear, (mu_t - linear @ mu_s)[:, None]])


def invert(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine matrix (crop pixels -> photo pixels)."""
    linear = np.asarray(matrix, np.float64)[:, :2]
    inverse = np.linalg.inv(linear)
    return np.hstack([inverse, (-inverse @ matrix[:, 2])[:, None]])


@dataclass(frozen=True)
class Alignment:
    matrix: np.ndarray  # 2x3, photo pixels -> crop pixels
    inverse: np.ndarray  # 2x3, crop pixels -> photo pixels
    scale: float  # crop pixels per photo pixel
    angle_deg: float  # the rotation applied (positive: counter-clockwise on screen)


def align_face(points: np.ndarray, size: int, margin: float) -> Alignment | None:
    """The alignment of one face, or None when its eyes or mouth are missing."""
    source = anchors(points)
    if not np.isfinite(source).all() or np.linalg.norm(source[1] - source[0]) < 1e-6:
        return None
    matrix = similarity(source, template_points(size, margin))
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    # image y points down, so a positive matrix angle turns clockwise on screen
    angle = -float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))
    return Alignment(matrix, invert(matrix), scale, angle)


def warp(image: np.ndarray, alignment: Alignment, size: int) -> np.ndarray:
    """The size x size aligned crop (black where it leaves the photo, as recognition crops usually are)."""
    import cv2

    # facekp's coordinates put the origin at a pixel's corner, OpenCV's at its centre
    matrix = alignment.matrix.copy()
    matrix[:, 2] += matrix[:, :2] @ (0.5, 0.5) - 0.5
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
