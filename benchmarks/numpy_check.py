"""An independent check of facekp's reported scores: NME / MSE100 / FR@0.10 from a predictions CSV
(`facekp infer ... --out preds.csv`) and the split's gt.csv, with numpy and Pillow only (no facekp
code), so a figure `facekp eval` prints can be recomputed by a path that shares nothing with it.

    .venv/bin/python benchmarks/numpy_check.py preds.csv /tmp/model-real/test
"""

import csv
import sys

import numpy as np
from PIL import Image


def read(path: str) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        return {
            r[0]: np.array(r[1:29], float).reshape(14, 2) for r in csv.reader(fh) if r and r[0] != "filename"
        }


def main() -> None:
    pred_csv, split = sys.argv[1], sys.argv[2]
    gt, pred = read(f"{split}/gt.csv"), read(pred_csv)
    names = sorted(gt)
    missing = set(names) - set(pred)
    if missing:
        raise SystemExit(f"{pred_csv}: no prediction for {len(missing)} images of {split}")
    g, p = np.stack([gt[n] for n in names]), np.stack([pred[n] for n in names])
    sizes = np.array([Image.open(f"{split}/images/{n}").size for n in names], float)  # (width, height)
    eyes = np.linalg.norm(g[:, 4] - g[:, 9], axis=1)  # outer eye corners: points 5 and 10
    nme = np.linalg.norm(p - g, axis=2).mean(axis=1) / eyes
    mse100 = (((p - g) * 100.0 / sizes[:, None, :]) ** 2).mean(axis=(1, 2))
    fr10 = (nme > 0.1).mean() * 100
    print(f"images {len(names)} NME {nme.mean() * 100:.4f} % MSE100 {mse100.mean():.4f} FR@0.10 {fr10:.2f} %")


if __name__ == "__main__":
    main()
