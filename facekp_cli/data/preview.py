"""`facekp data show`: a picture of samples with numbered, coloured keypoints.

Points on the image's left are drawn in greens, points on its right in reds and magentas, centre
points in yellow; so a horizontal flip that swaps left and right labels keeps greens on the
left, while a flip that forgot to swap them would put greens on the right.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facekp_cli.atomic import write_bytes_atomic
from facekp_cli.data.format import LabelledSplit, read_split
from facekp_cli.data.images import decode_image
from facekp_cli.errors import DataError, UsageError
from facekp_cli.keypoints import NAMES

TILE = 224
LABEL_BAR = 18

# BGR colours: left family (greens/cyan), right family (reds/magenta), centre (yellow).
_LEFT = [(60, 200, 60), (140, 255, 80), (40, 140, 0), (200, 255, 0), (120, 220, 160)]
_RIGHT = [(60, 60, 230), (180, 80, 255), (0, 0, 150), (200, 0, 255), (130, 130, 255)]
_CENTRE = (0, 230, 255)


def point_colors() -> list[tuple[int, int, int]]:
    colors, left_i, right_i = [], 0, 0
    for name in NAMES:
        if name.startswith("left_") or name == "mouth_left":
            colors.append(_LEFT[left_i % len(_LEFT)])
            left_i += 1
        elif name.startswith("right_") or name == "mouth_right":
            colors.append(_RIGHT[right_i % len(_RIGHT)])
            right_i += 1
        else:
            colors.append(_CENTRE)
    return colors


@dataclass(frozen=True)
class PreviewResult:
    out: Path
    split: str
    samples: tuple[str, ...]  # filenames shown
    augmented: bool
    width: int
    height: int


def draw_tile(image_rgb: np.ndarray, keypoints: np.ndarray, tile: int = TILE) -> np.ndarray:
    """Scale an image to fit a tile x tile square and draw numbered points; returns BGR."""
    import cv2

    from facekp_cli.plots import SHIFT, cv_point

    height, width = image_rgb.shape[:2]
    scale = tile / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = cv2.resize(
        image_rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    )
    canvas = np.full((tile, tile, 3), 32, np.uint8)
    canvas[:new_h, :new_w] = resized[..., ::-1]
    radius = max(2, tile // 70)
    for k, ((x, y), color) in enumerate(zip(np.asarray(keypoints, np.float64), point_colors(), strict=True)):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        centre = cv_point(x * scale, y * scale)
        cv2.circle(canvas, centre, radius << SHIFT, (0, 0, 0), -1, cv2.LINE_AA, SHIFT)
        cv2.circle(canvas, centre, (radius - 1) << SHIFT, color, -1, cv2.LINE_AA, SHIFT)
        origin = ((centre[0] >> SHIFT) + radius, (centre[1] >> SHIFT) - radius)
        cv2.putText(canvas, str(k + 1), origin, cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(canvas, str(k + 1), origin, cv2.FONT_HERSHEY_SIMPLEX, 0.33, color, 1, cv2.LINE_AA)
    return canvas


def _caption(cv2, tile: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((LABEL_BAR, tile.shape[1], 3), 16, np.uint8)
    cv2.putText(
        bar, text[:36], (3, LABEL_BAR - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (230, 230, 230), 1, cv2.LINE_AA
    )
    return np.vstack([tile, bar])


def render_preview(
    split_dir: Path,
    out: Path,
    n: int = 16,
    seed: int = 0,
    augment_with=None,
) -> PreviewResult:
    """Write a PNG grid of n random samples of a split. With `augment_with(image, points, seed)`,
    every sample is shown beside its augmented copy."""
    import cv2

    if n < 1:
        raise UsageError(f"--n must be at least 1 (got {n})")
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UsageError(f"{out}: the preview is written as PNG or JPEG; use a .png or .jpg name")
    split: LabelledSplit = read_split(split_dir)
    if not len(split):
        raise DataError(f"{split_dir}: no labelled images to show")
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(len(split), size=min(n, len(split)), replace=False))
    cells = []
    for index in indices:
        image, points = decode_image(split.image_path(index)), split.keypoints[index]
        cell = _caption(cv2, draw_tile(image, points), split.filenames[index])
        if augment_with is not None:
            aug_image, aug_points = augment_with(image, points, seed * 100_003 + int(index))
            aug_cell = _caption(cv2, draw_tile(aug_image, aug_points), "augmented")
            cell = np.hstack([cell, np.full((cell.shape[0], 4, 3), 255, np.uint8), aug_cell])
        cells.append(cell)
    grid = _grid(cells)
    ok, encoded = cv2.imencode(out.suffix.lower(), grid)
    if not ok:
        raise UsageError(f"{out}: cannot encode the preview image")
    write_bytes_atomic(out, encoded.tobytes())
    return PreviewResult(
        out,
        split_dir.name,
        tuple(split.filenames[i] for i in indices),
        augment_with is not None,
        grid.shape[1],
        grid.shape[0],
    )


def _grid(cells: list[np.ndarray], gap: int = 6) -> np.ndarray:
    cols = max(1, int(np.ceil(np.sqrt(len(cells) * (1 if cells[0].shape[1] < 2 * TILE else 0.5)))))
    rows = int(np.ceil(len(cells) / cols))
    h, w = cells[0].shape[:2]
    grid = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, 3), 255, np.uint8)
    for i, cell in enumerate(cells):
        r, c = divmod(i, cols)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        grid[y : y + h, x : x + w] = cell
    return grid
