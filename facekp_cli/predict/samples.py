"""Labelled sample images for export verification, quantization calibration and eval."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facekp_cli.data.format import GT_FILE, read_split
from facekp_cli.data.images import decode_image_for_input
from facekp_cli.errors import DataError
from facekp_cli.frame import Preprocessing, prepare_image
from facekp_cli.media import is_image_file


def resolve_split(data: str | os.PathLike[str] | None, default_root: Path, split: str = "test") -> Path:
    """A split folder (with gt.csv) from --data, which may also name a dataset root; else <root>/<split>."""
    if data is None:
        return Path(default_root) / split
    path = Path(data)
    if not (path / GT_FILE).is_file() and (path / split / GT_FILE).is_file():
        return path / split
    return path


@dataclass(frozen=True)
class LabelledBatch:
    """Network inputs with the truth and sizes needed to turn predictions into pixels and metrics."""

    split_dir: Path
    filenames: tuple[str, ...]
    inputs: np.ndarray  # (N, C, S, S) float32
    keypoints: np.ndarray  # (N, K, 2) pixels, NaN = unlabelled
    sizes: np.ndarray  # (N, 2) width, height


def load_labelled_batch(split_dir: Path, prep: Preprocessing, limit: int, purpose: str) -> LabelledBatch:
    """The first `limit` images of a labelled split, through the one preprocessing path."""
    if not (Path(split_dir) / GT_FILE).is_file():
        raise DataError(
            f"{split_dir}: no labelled images for {purpose} (expected {Path(split_dir) / GT_FILE}); "
            f"pass --data DIR with a dataset split"
        )
    split = read_split(split_dir)
    if len(split) == 0:
        raise DataError(f"{split_dir / GT_FILE}: no images listed; {purpose} needs at least one")
    count = min(limit, len(split))
    inputs, sizes = [], []
    for index in range(count):
        network_input, size = _network_input(split.image_path(index), prep)
        inputs.append(network_input)
        sizes.append(size)
    return LabelledBatch(
        Path(split_dir),
        split.filenames[:count],
        np.stack(inputs),
        split.keypoints[:count],
        np.asarray(sizes, np.float64),
    )


def _network_input(path: Path, prep: Preprocessing) -> tuple[np.ndarray, tuple[int, int]]:
    """Decoded as infer and eval decode it (a large JPEG at reduced scale), so the NME an export or
    int8 report prints is the one `facekp eval` gives on the same images (issue 17)."""
    sized = decode_image_for_input(path, prep.input_size)
    return prepare_image(sized.pixels, prep), (sized.width, sized.height)


GENERATED_SEED = 20_260_101  # pictures made on the spot for verification; not the default set's seed


def load_verification_batch(
    data: str | os.PathLike[str] | None, default_root: Path, prep: Preprocessing, limit: int, purpose: str
) -> LabelledBatch:
    """Images to compare an export with PyTorch on: they need not be labelled.

    A split with gt.csv gives labelled images; a folder of images (or a split's images/) gives
    unlabelled ones; with no --data and no dataset, pictures are generated on the spot (the
    synthetic generator labels them exactly, so NME is still reported).
    """
    split_dir = resolve_split(data, default_root)
    if (split_dir / GT_FILE).is_file():
        return load_labelled_batch(split_dir, prep, limit, purpose)
    for folder in (split_dir / "images", split_dir):
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.glob("*") if p.is_file() and is_image_file(p))
        if files:
            return _unlabelled_batch(folder, files[:limit], prep)
    if data is not None:
        raise DataError(f"{split_dir}: no images for {purpose} (expected gt.csv, images/ or image files)")
    return generated_batch(prep, limit)


def _unlabelled_batch(folder: Path, files: list[Path], prep: Preprocessing) -> LabelledBatch:
    inputs, sizes = [], []
    for path in files:
        network_input, size = _network_input(path, prep)
        inputs.append(network_input)
        sizes.append(size)
    unlabelled = np.full((len(files), 14, 2), np.nan)
    return LabelledBatch(
        folder, tuple(p.name for p in files), np.stack(inputs), unlabelled, np.asarray(sizes, np.float64)
    )


def generated_batch(prep: Preprocessing, count: int, seed: int = GENERATED_SEED) -> LabelledBatch:
    """`count` synthetic face crops rendered in memory, with their exact labels."""
    import cv2

    from facekp_cli.data.synth.generator import render_image

    inputs, points, sizes = [], [], []
    for index in range(count):
        rendered = render_image(seed, index)
        image = cv2.cvtColor(rendered.image, cv2.COLOR_BGR2RGB)
        inputs.append(prepare_image(image, prep))
        points.append(rendered.keypoints)
        sizes.append((image.shape[1], image.shape[0]))
    return LabelledBatch(
        Path(f"<{count} pictures generated on the spot, seed {seed}>"),
        tuple(f"generated_{i:03d}" for i in range(count)),
        np.stack(inputs),
        np.asarray(points, np.float64),
        np.asarray(sizes, np.float64),
    )
