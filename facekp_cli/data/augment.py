"""Keypoint-aware training augmentation (albumentations), shared by the Dataset and `data show --augment`.

This is the `augment.backend = "albumentations"` path (per sample, in loader workers); the batched
backend (data/batch_augment.py) runs the same recipe as tensor ops on the training device.

Decisions, each tested in tests/train/test_augment.py:

- Augmentation runs on the image *after* `resize_to_input` (the shared inference resize), with the
  points in that frame: a 96x96 warp is ~20x cheaper than warping the original, and the network
  never sees the original resolution anyway. The pipeline itself is size-agnostic (strengths
  are fractions of the image), so it works at any resolution.
- The horizontal flip is our own step, not A.HorizontalFlip: albumentations 2.0.8 cannot swap
  point identities, and a flipped "left eye" is the right eye. x becomes W - x (the origin is
  the corner of the top-left pixel, docs/DESIGN.md) and points are permuted by keypoints.FLIP_INDEX.
- albumentations puts pixel centres at integer coordinates; our frame puts them at +0.5, so
  points are shifted by half a pixel around the geometric transforms.
- Unlabelled (NaN) points travel as placeholders and come back NaN.
- Points pushed out of the frame stay as regression targets (their position is still exact and
  implied by the rest of the face; the head regresses beyond [-1, 1] without trouble) unless they
  lie farther than `augment.keep_margin` (a fraction of the image side) outside, where they
  become NaN, i.e. masked out of the loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from facekp_cli.keypoints import FLIP_INDEX

if TYPE_CHECKING:
    from facekp_cli.settings import AugmentSettings

# albumentations' pixel-centre convention vs ours (docs/DESIGN.md: origin at the pixel corner).
_PIXEL_CENTRE = 0.5


def build_pipeline(aug: AugmentSettings) -> Any:
    """The albumentations Compose for everything except the horizontal flip."""
    import albumentations as A
    import cv2

    low_hole = min(0.05, aug.dropout_size)
    transforms = [
        # Real face sets hold faces turned sideways and upside down: a share of the warps draws
        # its angle from the whole circle instead of +-rotate_deg.
        A.OneOf(
            [
                A.Affine(
                    scale=(1.0 - aug.scale, 1.0 + aug.scale),
                    translate_percent=(-aug.shift, aug.shift),
                    rotate=(-aug.rotate_deg, aug.rotate_deg),
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0,
                    p=1.0 - aug.full_turn_p,
                ),
                A.Affine(
                    scale=(1.0 - aug.scale, 1.0 + aug.scale),
                    translate_percent=(-aug.shift, aug.shift),
                    rotate=(-180.0, 180.0),
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0,
                    p=aug.full_turn_p,
                ),
            ],
            p=aug.affine_p,
        ),
        A.Perspective(
            scale=(0.0, aug.perspective_scale), border_mode=cv2.BORDER_CONSTANT, p=aug.perspective_p
        ),
        A.CoarseDropout(
            num_holes_range=(1, 3),
            hole_height_range=(low_hole, aug.dropout_size),
            hole_width_range=(low_hole, aug.dropout_size),
            fill=0,
            p=aug.dropout_p,
        ),
        A.ColorJitter(
            brightness=aug.brightness,
            contrast=aug.contrast,
            saturation=aug.saturation,
            hue=aug.hue,
            p=aug.color_p,
        ),
        A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.2), p=aug.blur_p),
        A.GaussNoise(std_range=(0.02, 0.08), p=aug.noise_p),
        A.ImageCompression(quality_range=(aug.jpeg_quality_min, 95), p=aug.jpeg_p),
        A.ToGray(num_output_channels=3, p=aug.gray_p),
    ]
    return A.Compose(
        transforms,
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
    )


def hflip(image: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror the image and the points; left and right points swap identities."""
    width = image.shape[1]
    flipped = np.ascontiguousarray(image[:, ::-1])
    points = np.asarray(keypoints, np.float32).copy()
    points[:, 0] = width - points[:, 0]
    return flipped, points[list(FLIP_INDEX)]


def mask_far_outside(keypoints: np.ndarray, width: int, height: int, margin: float) -> np.ndarray:
    """NaN for points more than `margin` x the image side outside the frame; others unchanged."""
    points = np.asarray(keypoints, np.float32).copy()
    x, y = points[:, 0], points[:, 1]
    far = (
        (x < -margin * width)
        | (x > (1 + margin) * width)
        | (y < -margin * height)
        | (y > (1 + margin) * height)
    )
    points[far] = np.nan
    return points


def apply_augmentation(
    pipeline: Any, image: np.ndarray, keypoints: np.ndarray, aug: AugmentSettings, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Augment one (H, W, 3) uint8 image and its (14, 2) pixel points, reproducibly for a seed."""
    rng = np.random.default_rng(seed)
    points = np.asarray(keypoints, np.float32)
    if rng.random() < aug.hflip_p:
        image, points = hflip(image, points)
    labelled = np.isfinite(points).all(axis=1)
    placeholders = np.where(labelled[:, None], points - _PIXEL_CENTRE, 0.0).astype(np.float32)
    pipeline.set_random_seed(int(rng.integers(2**31)))
    out = pipeline(image=image, keypoints=placeholders)
    moved = np.asarray(out["keypoints"], np.float32).reshape(-1, 2) + _PIXEL_CENTRE
    moved[~labelled] = np.nan
    height, width = out["image"].shape[:2]
    return out["image"], mask_far_outside(moved, width, height, aug.keep_margin)
