"""Is the data loader the bottleneck? Training img/s with the real data module vs in-memory tensors.

Both training measurements run the same model, optimizer and Lightning Trainer for the same
number of steps; only the input differs: (a) KeypointDataModule (decode/resize cache +
augmentation in workers), (b) pre-made batches already in memory. Target: (a) >= 0.9 x (b).
A third figure, the loader alone with no model consuming it, shows the loader's headroom.

    .venv/bin/python benchmarks/train_throughput.py --data faces_data --steps 12 --workers 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from facekp_cli.data.datamodule import KeypointDataModule
from facekp_cli.data.synth.generator import synthesize
from facekp_cli.model.lightning_module import KeypointModule
from facekp_cli.services.train import _base_meta
from facekp_cli.settings import load_settings

TARGET = 0.9


class StepTimer(L.Callback):
    """Wall time from the start of step `warmup` to the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.images = warmup, None, None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()
        if batch_idx >= self.warmup:
            self.images += len(batch["image"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()

    @property
    def images_per_second(self) -> float:
        return self.images / (self.end - self.start)


class InMemoryBatches(Dataset):
    """Batches collated once, served as-is (batch_size=None): no decode, no augmentation."""

    def __init__(self, batches: list[dict]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict:
        return self.batches[index]


def fit_and_time(settings, datamodule, train_loader, steps: int, warmup: int) -> float:
    L.seed_everything(0, verbose=False)
    module = KeypointModule(settings, _base_meta(settings, datamodule, None))
    timer = StepTimer(warmup)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=steps,
        limit_val_batches=0,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        default_root_dir=tempfile.mkdtemp(),
    )
    trainer.fit(module, train_dataloaders=train_loader)
    return timer.images_per_second


def loader_only(datamodule, batches: int) -> float:
    """Images per second the training loader delivers with no model consuming them."""
    loader = datamodule.train_dataloader()
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    started, images = time.perf_counter(), 0
    for _ in range(batches):
        images += len(next(iterator)["image"])
    return images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("faces_data"))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--no-cache", action="store_true", help="decode every image in the workers")
    parser.add_argument("--synth", type=int, default=6000, help="images to generate when --data is missing")
    args = parser.parse_args()
    if not args.data.exists():
        synthesize(args.data, args.synth, seed=0)

    overrides = {
        "data.root": args.data,
        "data.num_workers": args.workers,
        "model.input_size": args.input_size,
        "train.batch_size": args.batch_size,
        "train.cache_images": False if args.no_cache else None,
    }
    settings = load_settings(overrides=overrides)
    datamodule = KeypointDataModule(settings)
    started = time.perf_counter()
    datamodule.setup("fit")
    setup_s = time.perf_counter() - started

    loader_img_s = loader_only(datamodule, min(args.steps, len(datamodule.train_dataloader()) - 1))
    real = fit_and_time(settings, datamodule, datamodule.train_dataloader(), args.steps, args.warmup)

    batches = []
    for batch in datamodule.train_dataloader():
        batches.append({k: v.clone() for k, v in batch.items()})
        if len(batches) == args.steps:
            break
    memory = DataLoader(InMemoryBatches(batches), batch_size=None, shuffle=False, num_workers=0)
    in_memory = fit_and_time(settings, datamodule, memory, args.steps, args.warmup)

    ratio = real / in_memory
    print(
        json.dumps(
            {
                "input_size": settings.model.input_size,
                "width": settings.model.width,
                "batch_size": settings.train.batch_size,
                "num_workers": args.workers,
                "cache_images": settings.train.cache_images,
                "train_images": len(datamodule.train_indices),
                "setup_s": round(setup_s, 2),
                "torch_threads": torch.get_num_threads(),
                "loader_only_img_s": round(loader_img_s, 1),
                "real_img_s": round(real, 1),
                "in_memory_img_s": round(in_memory, 1),
                "ratio": round(ratio, 3),
            }
        )
    )
    if ratio < TARGET:
        raise SystemExit(f"loader-fed training is {ratio:.2f}x the in-memory speed; target >= {TARGET}x")


if __name__ == "__main__":
    main()
