"""Where a model's points go wrong on labelled faces, point by point: NME per point and the mean
offset along the face's own axes (x along the outer eye corners, y across), in % of the inter-ocular
distance, from a predictions CSV (`facekp infer ... --out preds.csv`) and the split's gt.csv.

A mean offset is a convention the model learned from its training labels that the real labels do
not share (the generator's v4 changes were read off this table on the real *training* faces), and
the last lines say how much NME all such offsets together cost, and how much a half-pixel label
convention (integer pixel indices vs facekp's pixel-corner frame) would.

    .venv/bin/python benchmarks/point_bias.py preds.csv /tmp/model-real/train
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from numpy_check import read

from facekp_cli.keypoints import NAMES


def main() -> None:
    pred_csv, split = sys.argv[1], sys.argv[2]
    gt, pred = read(f"{split}/gt.csv"), read(pred_csv)
    names = sorted(gt)
    g, p = np.stack([gt[n] for n in names]), np.stack([pred[n] for n in names])
    eyes = np.linalg.norm(g[:, 4] - g[:, 9], axis=1)
    error = np.linalg.norm(p - g, axis=2) / eyes[:, None] * 100
    ax = (g[:, 9] - g[:, 4]) / eyes[:, None]
    ay = np.stack([-ax[:, 1], ax[:, 0]], axis=1)
    offset = p - g
    dx = (offset * ax[:, None]).sum(axis=2) / eyes[:, None] * 100
    dy = (offset * ay[:, None]).sum(axis=2) / eyes[:, None] * 100
    print(f"{len(names)} faces, NME {error.mean():.3f} %  (offsets: % of the outer-eye-corner distance)")
    print(f"{'point':22s} {'NME':>6s} {'mean x':>7s} {'mean y':>7s} {'sd x':>6s} {'sd y':>6s}")
    for k, name in enumerate(NAMES):
        print(
            f"{name:22s} {error[:, k].mean():6.2f} {dx[:, k].mean():+7.2f} {dy[:, k].mean():+7.2f}"
            f" {dx[:, k].std():6.2f} {dy[:, k].std():6.2f}"
        )
    shift = (dx.mean(0)[None, :, None] * ax[:, None] + dy.mean(0)[None, :, None] * ay[:, None]) / 100
    unbiased = np.linalg.norm(p - shift * eyes[:, None, None] - g, axis=2) / eyes[:, None] * 100
    print(f"NME with every point's mean offset removed: {unbiased.mean():.3f} %")
    # Labels clicked as integer pixel indices put pixel centres on integers; facekp's frame (and the
    # generator's exact labels) put them at +0.5. What reading the labels that way would change:
    integer = np.array([np.allclose(gt[n], np.round(gt[n])) for n in names])
    moved = np.linalg.norm(p - 0.5 - g, axis=2).mean(axis=1) / eyes * 100
    print(
        f"faces whose labels are all integers: {integer.sum()} of {len(names)}; NME with every prediction"
        f" moved by -0.5 px (pixel-index labels): {moved.mean():.3f} %"
    )
    print_shrinkage(g, p, eyes, ax, ay)


def print_shrinkage(g, p, eyes, ax, ay) -> None:
    """How much of each face's own geometry the model reads: the slope of predicted on true (1 = all,
    0 = the same answer for every face). A model that cannot read a cue on these faces falls back to
    its prior: the v4 default read the nose's sideways offset (the head's turn) at 0.46 of its size
    on the 540 real faces and 0.97 on synthetic ones, and on the real training faces turned by more
    than 0.2 eye distances (609 of 4,858) its nose tip NME was 16.0 % (7.6 % on the others)."""

    def measures(q):
        mid = (q[:, 4] + q[:, 9]) / 2
        nose = q[:, 10] - mid
        return {
            "turn (nose tip sideways of the eyes' middle)": (nose * ax).sum(axis=1) / eyes,
            "nose length (tip below the eyes' middle)": (nose * ay).sum(axis=1) / eyes,
            "mouth width": np.linalg.norm(q[:, 13] - q[:, 11], axis=1) / eyes,
            "mouth centre below its corners' line": ((q[:, 12] - (q[:, 11] + q[:, 13]) / 2) * ay).sum(axis=1)
            / eyes,
        }

    truth, predicted = measures(g), measures(p)
    print("slope of predicted on true (1 = read in full), in outer-eye-corner distances:")
    for name, values in truth.items():
        print(f"  {name:48s} {np.polyfit(values, predicted[name], 1)[0]:.2f}")


if __name__ == "__main__":
    main()
