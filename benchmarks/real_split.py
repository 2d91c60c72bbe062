"""A seeded, reproducible train/test split of a real labelled split folder, by hard links.

The real faces must not be copied into the repository (course data), so the split lives outside
it and links to the original images (never inside the repository):

    .venv/bin/python benchmarks/real_split.py ../shared/realdata/facepoints /tmp/facekp-real --test 540

Training on <out> uses its own `data.val_fraction` of train/ for checkpoint selection; test/ is
never seen in training and is what docs/bench/real.md calls "real-val".
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import numpy as np

from facekp_cli.data.format import GT_FILE, IMAGES_DIR, read_gt_csv, write_gt_csv


def make_split(source: Path, out: Path, test_count: int, seed: int = 0) -> dict[str, int]:
    filenames, keypoints = read_gt_csv(source / GT_FILE)
    order = np.random.default_rng(seed).permutation(len(filenames))
    parts = {"test": np.sort(order[:test_count]), "train": np.sort(order[test_count:])}
    for split, rows in parts.items():
        images = out / split / IMAGES_DIR
        images.mkdir(parents=True, exist_ok=True)
        names = [filenames[i] for i in rows]
        for name in names:
            link = images / name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                # Hard links, not symlinks: facekp refuses image names that resolve outside images/.
                try:
                    os.link(source / IMAGES_DIR / name, link)
                except OSError:  # another filesystem
                    shutil.copyfile(source / IMAGES_DIR / name, link)
        write_gt_csv(out / split / GT_FILE, names, keypoints[rows])
    return {split: len(rows) for split, rows in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="a split folder: images/ + gt.csv")
    parser.add_argument("out", type=Path)
    parser.add_argument("--test", type=int, default=540, help="images held out as test/")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_split(args.source, args.out, args.test, args.seed))


if __name__ == "__main__":
    main()
