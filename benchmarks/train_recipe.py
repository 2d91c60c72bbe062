"""Accuracy of the training recipe on CPU, beside the mean-shape baseline.

Two modes (results and exact commands in docs/bench/train.md):

  recipe  train with the default settings (plus the given overrides) through the real service,
          then score the best checkpoint on test/ (MSE100, NME, FR@0.10) against the mean-shape
          baseline from the same checkpoint:
            .venv/bin/python benchmarks/train_recipe.py recipe --data faces_data --epochs 6
  sizes   the input-size trade-off: same images, same epochs, input 64 / 96 / 128; training
          img/s and validation NME:
            .venv/bin/python benchmarks/train_recipe.py sizes --data faces_data --images 600 --epochs 4
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from facekp_cli import metrics
from facekp_cli.data.format import read_split, write_gt_csv
from facekp_cli.data.images import decode_image
from facekp_cli.data.synth.generator import synthesize
from facekp_cli.frame import normalised_to_points, prepare_image
from facekp_cli.model.checkpoint import load_checkpoint
from facekp_cli.services import train as service
from facekp_cli.settings import load_settings

TARGET = 5.0  # the model must beat the mean-shape baseline's test MSE100 five-fold


class EpochClock(L.Callback):
    """Training-only seconds and images (validation excluded) for an img/s figure."""

    def __init__(self) -> None:
        self.seconds, self.images, self._start = 0.0, 0, 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images += len(batch["image"])

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.seconds += time.perf_counter() - self._start

    def on_validation_end(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()


def score_on_test(checkpoint: Path, data: Path, batch_size: int = 64) -> dict:
    """Model and mean-shape baseline on test/, in original pixels (docs/DESIGN.md metrics)."""
    loaded = load_checkpoint(checkpoint)
    split = read_split(data / "test")
    images = [decode_image(split.image_path(i)) for i in range(len(split))]
    sizes = np.array([[im.shape[1], im.shape[0]] for im in images], np.float64)
    preds = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            batch = np.stack([prepare_image(im, loaded.meta.preprocessing) for im in chunk])
            preds.append(loaded.model(torch.from_numpy(batch)).numpy())
    pred_px = normalised_to_points(np.concatenate(preds), sizes[:, 0], sizes[:, 1])
    model = metrics.summarise(pred_px, split.keypoints, sizes)
    layout = np.asarray(loaded.meta.mean_shape, np.float64)
    baseline = metrics.summarise(metrics.mean_shape_predictions(layout, sizes), split.keypoints, sizes)
    keep = ("mse100", "nme", "fr10", "auc10")
    return {
        "test_images": len(split),
        "model": {k: round(getattr(model, k), 4) for k in keep},
        "mean_shape_baseline": {k: round(getattr(baseline, k), 4) for k in keep},
        "mse100_improvement": round(baseline.mse100 / model.mse100, 2),
    }


def recipe(args: argparse.Namespace) -> dict:
    overrides = {"data.root": args.data, "train.epochs": args.epochs, "tracking.enabled": False}
    overrides.update(dict(item.split("=", 1) for item in args.set))
    settings = load_settings(overrides=overrides)
    clock = EpochClock()
    started = time.perf_counter()
    result = service.run(settings, callbacks=[clock])
    wall = time.perf_counter() - started
    return {
        "settings": {k: v for k, v in settings.flat().items() if k.startswith(("model.", "train."))},
        "epochs": result.epochs_completed,
        "wall_s": round(wall, 1),
        "train_img_s": round(clock.images / max(clock.seconds, 1e-9), 1),
        "best_epoch": result.best_epoch,
        "val": {k: round(v, 4) for k, v in result.metrics.items()},
        "best_checkpoint": str(result.best_checkpoint),
        "test": score_on_test(result.best_checkpoint, Path(args.data)),
    }


def subset(data: Path, images: int, folder: Path) -> Path:
    """The first `images` rows of data/train as a dataset of its own (images linked, not copied)."""
    split = read_split(data / "train")
    root = folder / "subset"
    (root / "train").mkdir(parents=True)
    (root / "train" / "images").symlink_to(split.images_dir.resolve())
    write_gt_csv(root / "train" / "gt.csv", split.filenames[:images], split.keypoints[:images])
    return root


def sizes(args: argparse.Namespace) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = subset(Path(args.data), args.images, Path(tmp))
        for size in args.input_sizes:
            settings = load_settings(
                overrides={
                    "data.root": root,
                    "model.input_size": size,
                    "train.epochs": args.epochs,
                    "train.out_dir": Path(tmp) / "runs",
                    "train.best_path": Path(tmp) / f"best{size}.ckpt",
                    "train.early_stop_patience": 0,
                    "tracking.enabled": False,
                }
            )
            clock = EpochClock()
            started = time.perf_counter()
            result = service.run(settings, callbacks=[clock])
            rows.append(
                {
                    "input_size": size,
                    "epochs": result.epochs_completed,
                    "wall_s": round(time.perf_counter() - started, 1),
                    "train_img_s": round(clock.images / max(clock.seconds, 1e-9), 1),
                    "val_nme": round(result.metrics["val_nme"], 3),
                    "val_mse100": round(result.metrics["val_mse100"], 3),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    one = sub.add_parser("recipe")
    one.add_argument("--data", type=Path, default=Path("faces_data"))
    one.add_argument("--epochs", type=int, required=True)
    one.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    many = sub.add_parser("sizes")
    many.add_argument("--data", type=Path, default=Path("faces_data"))
    many.add_argument("--images", type=int, default=600)
    many.add_argument("--epochs", type=int, default=4)
    many.add_argument("--input-sizes", type=int, nargs="+", default=[64, 96, 128])
    for one_mode in (one, many):
        one_mode.add_argument(
            "--synth", type=int, default=6000, help="images to generate when --data is missing"
        )
    args = parser.parse_args()
    if not args.data.exists():
        synthesize(args.data, args.synth, seed=0)
    out = recipe(args) if args.mode == "recipe" else sizes(args)
    print(json.dumps(out, indent=2))
    if args.mode == "recipe" and out["test"]["mse100_improvement"] < TARGET:
        raise SystemExit(
            f"test MSE100 {out['test']['mse100_improvement']}x better than the mean shape; target {TARGET}x"
        )


if __name__ == "__main__":
    main()
