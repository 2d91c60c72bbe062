"""The mean-shape baseline of a dataset: the training-set mean layout scaled to each test image.

Usage: .venv/bin/python benchmarks/baseline.py [DIR]   (default: synthesize --n 6000 --seed 0 into a temp dir)
The generator's difficulty floor: MSE100 >= 25 on the test split of the default set.

`--layout-from OTHER` takes the layout from another split folder's labels (e.g. a synthetic set's
train/) and scores it on DIR/test: how close one set's geometry is to another's. The mean-shape
rows of docs/bench/real.md are

    .venv/bin/python benchmarks/real_split.py ../shared/realdata/facepoints /tmp/facekp-real --test 540
    .venv/bin/python benchmarks/baseline.py /tmp/facekp-real
    .venv/bin/python benchmarks/baseline.py /tmp/facekp-real --layout-from faces_data/train
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from facekp_cli.data.format import read_split
from facekp_cli.data.images import decode_image
from facekp_cli.metrics import mean_shape, mean_shape_predictions, summarise


def split_sizes(split) -> np.ndarray:
    """(N, 2) displayed (width, height) of every image of a split."""
    return np.array([decode_image(split.image_path(i)).shape[1::-1] for i in range(len(split))], np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, nargs="?", default=None)
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout-from", type=Path, help="split folder whose labels give the layout")
    args = parser.parse_args()
    tmp = None
    root = args.root
    if root is None:
        from facekp_cli.data.synth.generator import synthesize

        tmp = Path(tempfile.mkdtemp(prefix="baseline."))
        root = synthesize(tmp / "faces_data", args.n, seed=args.seed).out_dir
    try:
        train, test = read_split(args.layout_from or root / "train"), read_split(root / "test")
        layout = mean_shape(train.keypoints, split_sizes(train))
        sizes = split_sizes(test)
        summary = summarise(mean_shape_predictions(layout, sizes), test.keypoints, sizes)
        print(
            f"mean-shape baseline on {root}/test ({summary.images} images, "
            f"layout from {len(train)} in {train.root}): "
            f"MSE100 {summary.mse100:.2f}, NME {summary.nme:.2f} %, FR@0.10 {summary.fr10:.1f} %, "
            f"AUC@0.10 {summary.auc10:.3f}, PCK@0.10 {summary.pck10:.1f} %"
        )
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
