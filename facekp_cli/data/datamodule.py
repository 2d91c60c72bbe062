"""LightningDataModule over a dataset folder: a seeded train/val split of train/; test/ stays for eval."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from facekp_cli.data.dataset import KeypointDataset, ResizedImages, load_resized
from facekp_cli.data.format import GT_FILE, LabelledSplit, is_split_folder, read_split
from facekp_cli.data.images import displayed_size
from facekp_cli.errors import DataError
from facekp_cli.frame import Preprocessing
from facekp_cli.metrics import mean_shape
from facekp_cli.settings import Settings

FIX_HINT = "run `facekp data synth` for a synthetic set or `facekp data pull` for the versioned one"


def read_train_split(root: Path) -> LabelledSplit:
    """The train/ split of a dataset folder (or the folder itself when it is a single split, as real
    datasets come), or a DataError that says how to get one."""
    root = Path(root)
    split_dir = root if is_split_folder(root) and not (root / "train").is_dir() else root / "train"
    gt = split_dir / GT_FILE
    if not gt.is_file():
        raise DataError(f"{gt}: no training data ({FIX_HINT}, or pass --data DIR)")
    split = read_split(split_dir)
    labelled = np.isfinite(split.keypoints).all(axis=2).any(axis=1).sum()
    if len(split) < 2 or labelled < 2:
        raise DataError(f"{gt}: needs at least 2 labelled images to train, found {labelled} ({FIX_HINT})")
    return split


def split_indices(count: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/val index split; both sides keep at least one image."""
    order = np.random.default_rng(seed).permutation(count)
    n_val = min(max(1, round(count * val_fraction)), count - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class KeypointDataModule(L.LightningDataModule):
    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.prep = Preprocessing.for_channels(settings.model.input_size, settings.model.in_channels)
        self.split: LabelledSplit | None = None
        self.cache: ResizedImages | None = None
        self.sizes: np.ndarray | None = None
        self.train_indices = self.val_indices = np.zeros(0, np.int64)

    def setup(self, stage: str | None = None) -> None:
        if self.split is not None:
            return
        split = read_train_split(self.settings.data.root)
        if self.settings.train.cache_images:
            self.cache = load_resized(split, self.prep.input_size, max(1, self.settings.data.num_workers))
            self.sizes = self.cache.sizes
        else:
            self.sizes = np.array(
                [displayed_size(split.image_path(i)) for i in range(len(split))], np.float32
            )
        self.train_indices, self.val_indices = split_indices(
            len(split), self.settings.data.val_fraction, self.settings.train.seed
        )
        self.split = split

    @property
    def mean_shape(self) -> np.ndarray:
        """Training-set mean layout, (14, 2) fractions of width and height (the eval baseline)."""
        self.setup()
        idx = self.train_indices
        return mean_shape(self.split.keypoints[idx], self.sizes[idx])

    def dataset(self, which: str) -> KeypointDataset:
        self.setup()
        train = which == "train"
        indices = self.train_indices if train else self.val_indices
        augment = self.settings.augment if train else None
        margin = self.settings.augment.keep_margin if train else None
        batched = self.settings.augment.backend == "batched"
        return KeypointDataset(
            self.split, indices, self.prep, augment, self.cache, margin, defer_augment=batched
        )

    def _loader(self, which: str) -> DataLoader:
        dataset = self.dataset(which)
        train = which == "train"
        batch_size = self.settings.train.batch_size
        # Cached items that are not augmented here (validation; training with the batched backend,
        # which augments on the training device) are a cheap copy: worker processes would only cost
        # start-up and inter-process copies.
        cheap = self.cache is not None and (not train or dataset.defer_augment or dataset.augment is None)
        workers = 0 if cheap else self.settings.data.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > batch_size,  # a batch of one breaks BatchNorm
            num_workers=workers,
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")
