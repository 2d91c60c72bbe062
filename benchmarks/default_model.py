"""The model card's measurements of one model on a labelled split of real faces (docs/MODEL_CARD.md).

    .venv/bin/python benchmarks/default_model.py /tmp/facekp-real/test [--ckpt X | --model X.onnx]

Prints one JSON object: MSE100 / NME / FR@0.10 overall (the numbers `facekp eval` reports, through
the same predictor and metrics), NME by roll angle of the face (the eye line's tilt in the labels),
by face size (inter-ocular distance in pixels of the original image), on the same faces shrunk to
a few pixel sizes (tiny faces), and with a grey block hiding part of the face (occlusion; scored on
all 14 points, hidden or not); then images per CPU-second of one core (one thread, batch 32,
preprocessing included, decoding excluded), which does not depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # speed per core: one thread everywhere

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facekp_cli.data.format import read_split
from facekp_cli.data.images import decode_image
from facekp_cli.frame import normalised_to_points, prepare_image
from facekp_cli.metrics import failure_rate, mse100_per_image, nme_per_image
from facekp_cli.model.resolve import default_checkpoint_path
from facekp_cli.predict.backends import checkpoint_predictor, onnx_predictor

LEFT_PUPIL, RIGHT_PUPIL = 5, 8
ROLL_BUCKETS = ((0, 10), (10, 20), (20, 30), (30, 45), (45, 90), (90, 181))
IOD_BUCKETS = ((0, 20), (20, 30), (30, 40), (40, 60), (60, 10_000))
TINY_SIDES = (48, 32, 24, 16)  # the face crop shrunk to this longer side, then predicted
TURNS = (15, 30, 45, 90, 180)  # the whole crop turned by this many degrees (labels turned with it)
BATCH = 32


def predict(predictor, images: list[np.ndarray]) -> np.ndarray:
    prep = predictor.meta.preprocessing
    out = []
    for start in range(0, len(images), BATCH):
        chunk = images[start : start + BATCH]
        batch = np.stack([prepare_image(image, prep) for image in chunk])
        widths = np.array([i.shape[1] for i in chunk], np.float64)
        heights = np.array([i.shape[0] for i in chunk], np.float64)
        out.append(normalised_to_points(predictor.predict(batch), widths, heights))
    return np.concatenate(out)


def summary(pred: np.ndarray, gt: np.ndarray, sizes: np.ndarray, rows=None) -> dict:
    rows = np.arange(len(gt)) if rows is None else np.asarray(rows)
    nme = nme_per_image(pred[rows], gt[rows])
    return {
        "faces": len(rows),
        "mse100": round(float(np.nanmean(mse100_per_image(pred[rows], gt[rows], sizes[rows]))), 3),
        "nme_pct": round(float(np.nanmean(nme) * 100), 3),
        "fr10_pct": round(failure_rate(nme) * 100, 2),
    }


def roll_degrees(gt: np.ndarray) -> np.ndarray:
    """Tilt of the pupil line from horizontal, 0..180 (a face upside down is ~180). In this label
    convention `left_pupil` is the one on the image's left, so an upright face points +x."""
    delta = gt[:, RIGHT_PUPIL] - gt[:, LEFT_PUPIL]
    return np.abs(np.degrees(np.arctan2(delta[:, 1], delta[:, 0])))


def turn(image: np.ndarray, points: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """The crop turned about its centre on a canvas that holds all of it; points mapped exactly."""
    import cv2

    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)  # pixel-corner frame: centre w/2
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    side_w, side_h = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
    matrix[:, 2] += (side_w - w) / 2, (side_h - h) / 2
    # cv2 samples pixel centres at integers; the labels put them at +0.5: shift in, warp, shift out
    shifted = matrix.copy()
    shifted[:, 2] += matrix[:, :2] @ [0.5, 0.5] - 0.5
    turned = cv2.warpAffine(image, shifted, (side_w, side_h), borderMode=cv2.BORDER_REPLICATE)
    return turned, points @ matrix[:, :2].T + matrix[:, 2]


def shrink(image: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    import cv2

    scale = side / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, scale


def occlude(image: np.ndarray, gt: np.ndarray, part: str) -> np.ndarray:
    """A mid-grey block over the eyes (sunglasses-like) or the mouth (mask-like), from the labels."""
    out = image.copy()
    rows = {"eyes": [4, 5, 6, 7, 8, 9], "mouth": [11, 12, 13]}[part]
    pts = gt[rows]
    pts = pts[np.isfinite(pts).all(axis=1)]
    if not len(pts):
        return out
    iod = np.linalg.norm(gt[4] - gt[9]) if np.isfinite(gt[[4, 9]]).all() else image.shape[1] / 3
    pad = 0.25 * iod
    x0, y0 = (pts.min(axis=0) - pad).astype(int)
    x1, y1 = (pts.max(axis=0) + pad).astype(int)
    out[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = 128
    return out


def images_per_cpu_second(predictor, images: list[np.ndarray], seconds: float = 3.0) -> float:
    """Preprocessing + model, batch 32, one thread; CPU time of this process."""
    chunk = (images * (BATCH // max(1, len(images)) + 1))[:BATCH]
    predict(predictor, chunk)  # warm-up
    done, started = 0, time.process_time()
    while time.process_time() - started < seconds:
        predict(predictor, chunk)
        done += len(chunk)
    return done / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("split", type=Path, help="a labelled split: images/ + gt.csv")
    parser.add_argument("--ckpt", type=Path, default=None, help="default: the shipped default model")
    parser.add_argument("--model", type=Path, default=None, help="an exported .onnx instead")
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    if args.model is not None:
        predictor = onnx_predictor(args.model, threads=1)
    else:
        predictor = checkpoint_predictor(args.ckpt or default_checkpoint_path())
    split = read_split(args.split)
    images = [decode_image(split.image_path(i)) for i in range(len(split))]
    gt = np.asarray(split.keypoints, np.float64)
    sizes = np.array([(i.shape[1], i.shape[0]) for i in images], np.float64)
    pred = predict(predictor, images)
    report: dict = {"model": str(predictor.path), "split": str(args.split), "all": summary(pred, gt, sizes)}

    roll = roll_degrees(gt)
    report["by_roll_deg"] = {
        f"{lo}-{hi}": summary(pred, gt, sizes, np.flatnonzero((roll >= lo) & (roll < hi)))
        for lo, hi in ROLL_BUCKETS
        if ((roll >= lo) & (roll < hi)).any()
    }
    iod = np.linalg.norm(gt[:, 4] - gt[:, 9], axis=1)
    report["by_interocular_px"] = {
        f"{lo}-{hi}": summary(pred, gt, sizes, np.flatnonzero((iod >= lo) & (iod < hi)))
        for lo, hi in IOD_BUCKETS
        if ((iod >= lo) & (iod < hi)).any()
    }
    tiny = {}
    for side in TINY_SIDES:
        shrunk = [shrink(image, side) for image in images]
        small_pred = predict(predictor, [s for s, _ in shrunk])
        scales = np.array([s for _, s in shrunk])[:, None, None]
        tiny[f"{side}px"] = summary(small_pred / scales, gt, sizes)  # scored in the original frame
    report["tiny_faces_longer_side"] = tiny
    turned = {}
    for degrees in TURNS:
        pairs = [turn(image, g, degrees) for image, g in zip(images, gt, strict=True)]
        turned_gt = np.stack([p for _, p in pairs])
        turned_sizes = np.array([(i.shape[1], i.shape[0]) for i, _ in pairs], np.float64)
        turned[f"{degrees}deg"] = summary(predict(predictor, [i for i, _ in pairs]), turned_gt, turned_sizes)
    report["turned"] = turned
    pairs = list(zip(images, gt, strict=True))
    report["occluded"] = {
        part: summary(predict(predictor, [occlude(i, g, part) for i, g in pairs]), gt, sizes)
        for part in ("eyes", "mouth")
    }
    if not args.no_speed:
        report["images_per_cpu_second_one_thread"] = round(
            images_per_cpu_second(predictor, images[:BATCH]), 1
        )
    report["load_average"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
