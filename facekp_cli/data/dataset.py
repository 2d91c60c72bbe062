"""The training Dataset: decode -> shared resize -> augment (train only) -> network input and targets.

Images are decoded and resized exactly as inference does it and, by default, kept in RAM
after the first decode (96x96x3 bytes each: 6000 images are 166 MB), so workers only augment.
Targets are the points normalised to [-1, 1] in the network frame; since the resize is a
per-axis stretch, that is the same number as normalising in the original image.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from facekp_cli.data.augment import apply_augmentation, build_pipeline, mask_far_outside
from facekp_cli.data.format import LabelledSplit
from facekp_cli.data.images import decode_image_for_input
from facekp_cli.frame import (
    Preprocessing,
    points_to_normalised,
    resize_to_input,
    to_network_input,
)
from facekp_cli.settings import AugmentSettings


@dataclass(frozen=True)
class ResizedImages:
    """Decoded, resized images of a split (in split order) and their original (width, height)."""

    images: np.ndarray  # (N, S, S, 3) uint8
    sizes: np.ndarray  # (N, 2) float32


def _load_resized(path: Path, input_size: int) -> tuple[np.ndarray, tuple[int, int]]:
    # The decoding infer and eval use (predict/decoding.py): a large JPEG is decoded at reduced
    # scale there, so validation must see the same pixels or its NME is not what eval repeats.
    sized = decode_image_for_input(path, input_size)
    return resize_to_input(sized.pixels, input_size), (sized.width, sized.height)


def load_resized(split: LabelledSplit, input_size: int, threads: int = 2) -> ResizedImages:
    """Decode and resize every image of a split once (PIL and OpenCV release the GIL, so threads help)."""
    paths = [split.image_path(i) for i in range(len(split))]
    with ThreadPoolExecutor(max(1, threads)) as pool:
        loaded = list(pool.map(lambda p: _load_resized(p, input_size), paths))
    images = np.empty((len(paths), input_size, input_size, 3), np.uint8)
    sizes = np.empty((len(paths), 2), np.float32)
    for index, (image, size) in enumerate(loaded):
        images[index], sizes[index] = image, size
    return ResizedImages(images, sizes)


class KeypointDataset(Dataset):
    """Items are dicts: image (C, S, S) float32, target (14, 2) normalised (0 where unlabelled),
    mask (14,) bool, points (14, 2) original pixels (NaN unlabelled), size (2,) (width, height).

    With `defer_augment` (the batched backend) items carry `pixels`, the resized (3, S, S) uint8
    image, instead of `image`, and un-augmented targets: the LightningModule augments and
    normalises the whole batch on the training device (data/batch_augment.py)."""

    def __init__(
        self,
        split: LabelledSplit,
        indices: np.ndarray,
        prep: Preprocessing,
        augment: AugmentSettings | None = None,
        cache: ResizedImages | None = None,
        keep_margin: float | None = None,
        defer_augment: bool = False,
    ) -> None:
        self.split = split
        self.indices = np.asarray(indices, dtype=np.int64)
        self.prep = prep
        self.augment = augment if augment is not None and augment.enabled else None
        self.cache = cache
        # Points farther outside the frame than this (a fraction of the side) are not targets.
        self.keep_margin = keep_margin
        self.defer_augment = defer_augment and self.augment is not None
        self._pipeline = None

    def __len__(self) -> int:
        return len(self.indices)

    def _resized(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        if self.cache is not None:
            return self.cache.images[row], self.cache.sizes[row]
        image, size = _load_resized(self.split.image_path(row), self.prep.input_size)
        return image, np.asarray(size, np.float32)

    def _augment(self, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._pipeline is None:
            if get_worker_info() is not None:
                import cv2

                cv2.setNumThreads(1)  # workers already run in parallel; OpenCV threads would oversubscribe
            self._pipeline = build_pipeline(self.augment)
        # Global numpy RNG: seeded per worker by Lightning's seed_everything(workers=True).
        seed = int(np.random.randint(0, 2**31 - 1))
        return apply_augmentation(self._pipeline, image, points, self.augment, seed)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        row = int(self.indices[item])
        image, size = self._resized(row)
        points = self.split.keypoints[row]
        side = self.prep.input_size
        net_points = points * (side / size)  # the resize is a per-axis stretch
        if self.defer_augment:
            target = points_to_normalised(net_points, side, side)
            mask = np.isfinite(target).all(axis=1)
            return {
                "pixels": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                "target": torch.from_numpy(np.where(mask[:, None], target, 0.0).astype(np.float32)),
                "mask": torch.from_numpy(mask),
                "points": torch.from_numpy(np.asarray(points, np.float32)),
                "size": torch.from_numpy(np.asarray(size, np.float32)),
                "index": torch.tensor(row),
            }
        if self.augment is not None:
            image, net_points = self._augment(image, net_points)
        elif self.keep_margin is not None:  # augmentation masks these itself
            net_points = mask_far_outside(net_points, side, side, self.keep_margin)
        target = points_to_normalised(net_points, side, side)
        mask = np.isfinite(target).all(axis=1)
        return {
            "image": torch.from_numpy(to_network_input(image, self.prep)),
            "target": torch.from_numpy(np.where(mask[:, None], target, 0.0).astype(np.float32)),
            "mask": torch.from_numpy(mask),
            "points": torch.from_numpy(np.asarray(points, np.float32)),
            "size": torch.from_numpy(np.asarray(size, np.float32)),
            "index": torch.tensor(row),
        }
