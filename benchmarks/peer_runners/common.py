"""Shared by the runners, which run inside each system's own virtual environment (see
benchmarks/peers.py): they import numpy and Pillow there; only run_facekp.py imports facekp.
Each times its loop over the images after loading: wall time and this process's CPU time."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--images", type=Path, required=True, help="text file: one image path a line")
    parser.add_argument("--out", type=Path, required=True, help="raw landmarks (.npz)")
    parser.add_argument("--core", type=int, default=None, help="pin this process to one CPU")
    return parser.parse_args()


def pin(core: int | None) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})


def decode(path: str) -> np.ndarray:
    """As facekp decodes: EXIF orientation applied, RGB uint8."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def run(args: argparse.Namespace, landmarks_of, count: int) -> None:
    """Time `landmarks_of(rgb) -> ((count, 2) array or None, used_fallback)` over every image,
    decoding included, and write the raw points (NaN where no face was found)."""
    paths = [line for line in args.images.read_text(encoding="utf-8").splitlines() if line]
    points = np.full((len(paths), count, 2), np.nan, np.float64)
    found = np.zeros(len(paths), bool)
    fallback = np.zeros(len(paths), bool)
    landmarks_of(decode(paths[0]))  # warm-up: lazy initialisation is not per-image work
    started, cpu_started = time.perf_counter(), time.process_time()
    for index, path in enumerate(paths):
        result, used_fallback = landmarks_of(decode(path))
        if result is not None:
            points[index], found[index] = result, True
        fallback[index] = used_fallback
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    save(args.out, points=points, found=found, fallback=fallback, seconds=seconds, cpu_seconds=cpu_seconds)


def save(out: Path, **arrays) -> None:
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(out)
