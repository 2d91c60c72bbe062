"""Batched vs per-sample training augmentation on CPU: the augmentation alone, and training img/s.

Two measurements, each interleaved over --rounds rounds (the machine is shared; the best round
counts, and the load average is printed beside every figure):

Costs are CPU time (all threads and finished worker processes), not wall time: the machine is shared.

1. Augmentation alone, one batch of --batch-size images at 64 and 96 px, CPU ms per batch:
   albumentations per sample (what a loader worker does, one OpenCV thread), our batched torch ops
   (data/batch_augment.py, torch's default threads), and kornia's AugmentationSequential with the
   closest equivalent recipe, when kornia is importable (it is not a dependency: measured to choose).
2. Training images per CPU-second (on 2 busy cores images/s is twice that) through the real
   Lightning Trainer for --steps steps, `augment.backend`
   "albumentations" (augmentation in --workers loader processes) vs "batched" (in the
   LightningModule), the same data, model and settings otherwise.

    .venv/bin/python benchmarks/augment_speed.py --data ../shared/realdata/facepoints \\
        --input-size 64 --width 32
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from facekp_cli.data.augment import apply_augmentation, build_pipeline
from facekp_cli.data.batch_augment import augment_batch
from facekp_cli.keypoints import NUM_KEYPOINTS
from facekp_cli.settings import AugmentSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent
# ../shared beside the checkout (the main repository) or above it (a worktree under wt/).
REAL = next(
    (p / "shared" / "realdata" / "facepoints" for p in ROOT.parents if (p / "shared" / "realdata").is_dir()),
    ROOT.parent / "shared" / "realdata" / "facepoints",
)


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def _cpu() -> float:
    """CPU seconds of this process (all threads) and of its children, live loader workers included:
    on cores shared with other work, wall time mostly measures the others; CPU time does not.

    RUSAGE_CHILDREN holds only children already waited for, so a persistent loader worker still
    running at the end was missing from the count (issue 22's 0.86x); psutil reads the live ones.
    Each child is counted once at any instant (live via psutil, or finished via RUSAGE_CHILDREN), so
    differences between two readings are right even when a worker ends in between.
    """
    import psutil

    own, finished = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    live = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:  # ended between the listing and the reading
            continue
        live += times.user + times.system
    return own.ru_utime + own.ru_stime + finished.ru_utime + finished.ru_stime + live


def per_sample_ms(images: np.ndarray, points: np.ndarray, aug: AugmentSettings) -> float:
    import cv2

    cv2.setNumThreads(1)
    pipeline = build_pipeline(aug)
    started = _cpu()
    for index, image in enumerate(images):
        apply_augmentation(pipeline, image, points[index], aug, seed=index)
    return (_cpu() - started) * 1000


def batched_ms(images: np.ndarray, points: np.ndarray, aug: AugmentSettings) -> float:
    started = _cpu()
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    side = images.shape[1]
    target = torch.from_numpy(2 * points / side - 1)
    augment_batch(pixels, target, torch.ones(target.shape[:2], dtype=torch.bool), aug)
    return (_cpu() - started) * 1000


def kornia_pipeline(aug: AugmentSettings):
    import kornia.augmentation as K

    return K.AugmentationSequential(
        K.RandomHorizontalFlip(p=aug.hflip_p),
        K.RandomAffine(
            degrees=aug.rotate_deg,
            translate=(aug.shift, aug.shift),
            scale=(1 - aug.scale, 1 + aug.scale),
            p=aug.affine_p,
        ),
        K.RandomPerspective(distortion_scale=aug.perspective_scale, p=max(aug.perspective_p, 1e-6)),
        K.ColorJitter(aug.brightness, aug.contrast, aug.saturation, aug.hue, p=aug.color_p),
        K.RandomGaussianBlur((5, 5), (0.3, 1.2), p=aug.blur_p),
        K.RandomGaussianNoise(std=0.05, p=aug.noise_p),
        K.RandomGrayscale(p=aug.gray_p),
        data_keys=["input", "keypoints"],
    )


def kornia_ms(pipeline, images: np.ndarray, points: np.ndarray) -> float:
    started = _cpu()
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    pipeline(pixels, torch.from_numpy(points))
    return (_cpu() - started) * 1000


def augmentation_alone(args, aug: AugmentSettings) -> list[dict]:
    try:
        import kornia

        pipelines = {"kornia": kornia_pipeline(aug)}
        kornia_version = kornia.__version__
    except ImportError:
        pipelines, kornia_version = {}, None
    rng = np.random.default_rng(0)
    rows = []
    for side in (64, 96):
        images = rng.integers(0, 256, (args.batch_size, side, side, 3), dtype=np.uint8)
        points = (rng.uniform(0.2, 0.8, (args.batch_size, NUM_KEYPOINTS, 2)) * side).astype(np.float32)
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            measures = [
                ("albumentations_per_sample", functools.partial(per_sample_ms, images, points, aug)),
                ("batched_torch", functools.partial(batched_ms, images, points, aug)),
            ]
            measures += [
                (f"kornia_{kornia_version}", functools.partial(kornia_ms, p, images, points))
                for p in pipelines.values()
            ]
            for name, measure in measures:
                measure()  # warm-up
                best[name] = min(best.get(name, float("inf")), min(measure() for _ in range(5)))
        row = {
            "side": side,
            "batch": args.batch_size,
            "ms_per_batch": {k: round(v, 2) for k, v in best.items()},
        }
        row["load"] = _load()
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def training(args) -> dict:
    import lightning as L
    from train_throughput import fit_and_time

    from facekp_cli.data.datamodule import KeypointDataModule

    L.seed_everything(0, verbose=False)
    best: dict[str, float] = {}
    loads = []
    for _ in range(args.rounds):
        for backend, workers in (("albumentations", args.workers), ("batched", args.workers)):
            overrides = {
                "data.root": args.data,
                "data.num_workers": workers,
                "model.input_size": args.input_size,
                "model.width": args.width,
                "augment.backend": backend,
            }
            settings = load_settings(overrides=overrides, environ={})
            datamodule = KeypointDataModule(settings)
            datamodule.setup("fit")
            started = _cpu()
            wall_rate = fit_and_time(settings, datamodule, datamodule.train_dataloader(), args.steps, 0)
            # CPU seconds of the whole fit (workers included), per image trained.
            rate = args.steps * settings.train.batch_size / (_cpu() - started)
            best[backend] = max(best.get(backend, 0.0), rate)
            loads.append(_load())
            line = f"{rate:.1f} img per CPU-s, {wall_rate:.1f} img/s wall (load {loads[-1]})"
            print(f"  {backend}: {line}", flush=True)
    row = {
        "input_size": args.input_size,
        "width": args.width,
        "steps": args.steps,
        "workers_albumentations": args.workers,
        "torch_threads": torch.get_num_threads(),
        "train_img_per_cpu_s": {k: round(v, 1) for k, v in best.items()},
        "batched_over_per_sample": round(best["batched"] / best["albumentations"], 2),
        "load_min_max": [min(loads), max(loads)],
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REAL, help="a split folder or a dataset root")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1, help="loader workers (the default on 2 cores)")
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads first")
    parser.add_argument("--skip-alone", action="store_true")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    print(f"cpus {os.cpu_count()}, load {_load()}, torch threads {torch.get_num_threads()}", flush=True)
    if not args.skip_alone:
        augmentation_alone(args, load_settings(environ={}).augment)
    if not args.skip_training:
        training(args)


if __name__ == "__main__":
    main()
