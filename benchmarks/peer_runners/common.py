"""Shared by the peer runners, which run inside the peers' own virtual environments (see
benchmarks/peers.py): they import numpy and Pillow there, never facekp."""

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
    started = time.perf_counter()
    for index, path in enumerate(paths):
        result, used_fallback = landmarks_of(decode(path))
        if result is not None:
            points[index], found[index] = result, True
        fallback[index] = used_fallback
    seconds = time.perf_counter() - started
    tmp = args.out.with_suffix(".tmp.npz")
    np.savez(tmp, points=points, found=found, fallback=fallback, seconds=seconds)
    tmp.replace(args.out)
