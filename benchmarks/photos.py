"""Whole photos: does the face finder find real faces, and do the points on a found face match the
points the same model gives on the face's own crop?

Real faces (a labelled split folder, e.g. the 540-face validation split of benchmarks/real_split.py)
are pasted at a random size (longer side 100-260 px) and place into 640x480 photos with cluttered
backgrounds (shapes, lines, text, noise, blur); some photos hold 2 or 3 faces. Per finder:

- found %: faces whose finder box contains both outer eye corners and the mouth centre (each box
  counts for one face at most);
- false faces per photo: boxes that matched no face;
- NME of the found: the model on the crop facekp cuts around each found face (infer --detect's
  path), in photo pixels, against the same model on the face's original crop (infer's face-crop
  path); both against the true points, normalised by the outer-eye distance;
- photos per second per core: finder + model on one thread, the photo already decoded.

`--layout` also prints where the outer eye corners and the mouth centre sit in each finder's box
(medians over the found faces: predict/detect.py's LAYOUTS).

    .venv/bin/python benchmarks/photos.py /tmp/facekp-real/test --model best.ckpt --finder yunet haar

The photos are made from a seed: the same command makes the same photos.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from facekp_cli.keypoints import LEFT_EYE_OUTER, NAMES, RIGHT_EYE_OUTER

MOUTH_CENTER = NAMES.index("mouth_center")
PHOTO_W, PHOTO_H = 640, 480
FACE_SIDES = (100, 260)  # the pasted face crop's longer side, pixels
FACES_PER_PHOTO = ((1, 0.6), (2, 0.25), (3, 0.15))


def clutter(rng: np.random.Generator) -> np.ndarray:
    """A busy 640x480 background: gradients, filled and outlined shapes, lines, text, noise, blur."""
    import cv2

    ys, xs = np.mgrid[0:PHOTO_H, 0:PHOTO_W].astype(np.float32)
    base = (
        rng.uniform(0, 255, 3)[None, None]
        + (xs[..., None] * rng.uniform(-0.2, 0.2, 3))
        + (ys[..., None] * rng.uniform(-0.2, 0.2, 3))
    )
    image = np.clip(base, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(15, 40))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 5)
        x, y = int(rng.integers(0, PHOTO_W)), int(rng.integers(0, PHOTO_H))
        size = int(rng.integers(5, 160))
        thick = -1 if rng.random() < 0.5 else int(rng.integers(1, 6))
        if kind == 0:
            cv2.rectangle(image, (x, y), (x + size, y + int(rng.integers(5, 160))), color, thick)
        elif kind == 1:
            cv2.circle(image, (x, y), size // 2, color, thick)
        elif kind == 2:
            cv2.line(image, (x, y), (int(rng.integers(0, PHOTO_W)), int(rng.integers(0, PHOTO_H))), color,
                     int(rng.integers(1, 8)))  # fmt: skip
        elif kind == 3:
            axes = (size // 2 + 1, int(rng.integers(3, 80)))
            cv2.ellipse(image, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, color, thick)
        else:
            text = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(3, 10))))
            cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.5, 2.5)), color, 2)
    noise = rng.normal(0, rng.uniform(2, 12), image.shape)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.5, 1.5)))
    return image


def make_photos(images: list[np.ndarray], points: np.ndarray, count: int, seed: int):
    """[(photo, [(face index, (K, 2) points in photo pixels, (x, y, w, h) pasted region), ...])]"""
    import cv2

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    used = 0
    photos = []
    for _ in range(count):
        photo = clutter(rng)
        wanted = int(rng.choice([n for n, _ in FACES_PER_PHOTO], p=[p for _, p in FACES_PER_PHOTO]))
        faces, taken = [], []
        for _ in range(wanted):
            index = int(order[used % len(order)])
            image = images[index]
            height, width = image.shape[:2]
            for _attempt in range(60):
                side = rng.uniform(*FACE_SIDES)
                scale = side / max(height, width)
                w, h = max(1, round(width * scale)), max(1, round(height * scale))
                if w >= PHOTO_W or h >= PHOTO_H:
                    continue
                x, y = int(rng.integers(0, PHOTO_W - w)), int(rng.integers(0, PHOTO_H - h))
                if all(x + w <= a or a + c <= x or y + h <= b or b + d <= y for a, b, c, d in taken):
                    break
            else:
                continue  # no room left in this photo
            used += 1
            photo[y : y + h, x : x + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
            # pixel-centre convention of cv2.resize: a point at p maps to (p + 0.5) * s - 0.5
            sx, sy = w / width, h / height
            pts = (points[index] + 0.5) * np.float64([sx, sy]) - 0.5 + np.float64([x, y])
            faces.append((index, pts, (x, y, w, h)))
            taken.append((x, y, w, h))
        photos.append((photo, faces))
    return photos


def contains(box, point) -> bool:
    return box.x <= point[0] <= box.x + box.width and box.y <= point[1] <= box.y + box.height


def match(boxes, faces) -> dict[int, object]:
    """face number -> the (largest) box holding its outer eye corners and mouth centre."""
    matched: dict[int, object] = {}
    free = list(boxes)
    for number, (_, pts, _) in enumerate(faces):
        anchors = [pts[LEFT_EYE_OUTER], pts[RIGHT_EYE_OUTER], pts[MOUTH_CENTER]]
        if not np.isfinite(anchors).all():
            continue
        for box in free:
            if all(contains(box, p) for p in anchors):
                matched[number] = box
                free.remove(box)
                break
    return matched


def predict_crop(predictor, image: np.ndarray, crop=None) -> np.ndarray:
    """(K, 2) points in `image` pixels: the whole image as the crop, or `crop` cut from it."""
    from facekp_cli.frame import normalised_to_points, prepare_image
    from facekp_cli.predict.detect import cut

    prep = predictor.meta.preprocessing
    if crop is None:
        part, origin = image, (0.0, 0.0)
    else:
        part, box = cut(image, crop)
        origin = (box.x, box.y)
    out = predictor.predict(prepare_image(part, prep)[None])[0]
    return normalised_to_points(out, part.shape[1], part.shape[0]) + np.float32(origin)


def nme(pred: np.ndarray, gt: np.ndarray) -> float:
    from facekp_cli.metrics import nme_per_image

    return float(nme_per_image(pred[None].astype(np.float64), gt[None].astype(np.float64))[0])


def run_finder(name: str, photos, images, points, predictor, min_score: float) -> dict:
    from facekp_cli.predict.detect import FaceDetector

    finder = FaceDetector(name, min_score)
    total = sum(len(faces) for _, faces in photos)
    found = false = 0
    photo_nme, crop_nme, agree = [], [], []
    layout = []
    seconds = 0.0
    crop_points: dict[int, np.ndarray] = {}
    mean_shape = predictor.meta.mean_shape if predictor is not None else None
    for photo, faces in photos:
        started = time.thread_time()
        boxes = finder.detect(photo)
        predicted = {}
        if predictor is not None:
            for box in boxes:  # the model runs on every box, as infer --detect does
                predicted[id(box)] = predict_crop(predictor, photo, finder.crop(box, mean_shape))
        seconds += time.thread_time() - started
        matched = match(boxes, faces)
        found += len(matched)
        false += len(boxes) - len(matched)
        for number, box in matched.items():
            index, pts, (x, y, w, h) = faces[number]
            eye_y = (pts[LEFT_EYE_OUTER, 1] + pts[RIGHT_EYE_OUTER, 1]) / 2
            left_x = (pts[LEFT_EYE_OUTER, 0] - box.x) / box.width
            right_x = (pts[RIGHT_EYE_OUTER, 0] - box.x) / box.width
            layout.append(
                [left_x, right_x, (eye_y - box.y) / box.height, (pts[MOUTH_CENTER, 1] - box.y) / box.height]
            )
            if predictor is None:
                continue
            if index not in crop_points:
                crop_points[index] = predict_crop(predictor, images[index])
            height, width = images[index].shape[:2]
            on_crop = (
                (crop_points[index] + 0.5) * np.float32([w / width, h / height]) - 0.5 + np.float32([x, y])
            )
            photo_nme.append(nme(predicted[id(box)], pts))
            crop_nme.append(nme(on_crop, pts))
            agree.append(
                nme(predicted[id(box)], on_crop.astype(np.float64)) if np.isfinite(pts).all() else np.nan
            )
    result = {
        "finder": finder.name,
        "min_score": min_score if finder.name == "yunet" else None,
        "photos": len(photos),
        "faces": total,
        "found_pct": round(100 * found / total, 2),
        "false_per_photo": round(false / len(photos), 4),
        "photos_per_s_per_core": round(len(photos) / seconds, 2),
        "layout_median": _medians(layout),
    }
    if predictor is not None and photo_nme:
        photo_mean, crop_mean = float(np.nanmean(photo_nme)), float(np.nanmean(crop_nme))
        result.update(
            nme_found_pct=round(100 * photo_mean, 3),
            nme_crops_pct=round(100 * crop_mean, 3),
            nme_ratio=round(photo_mean / crop_mean, 3),
            photo_vs_crop_nme_pct=round(100 * float(np.nanmean(agree)), 3),
        )
    return result


def _medians(layout: list) -> dict[str, float] | None:
    if not layout:
        return None
    medians = np.round(np.nanmedian(np.asarray(layout), axis=0), 3).tolist()
    return dict(zip(["eye_outer_left_x", "eye_outer_right_x", "eye_y", "mouth_y"], medians, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("split", type=Path, help="a labelled split folder (images/ + gt.csv)")
    parser.add_argument("--model", type=Path, help="checkpoint or exported model for the NME columns")
    parser.add_argument("--finder", nargs="+", default=["yunet", "haar"])
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--save", type=Path, help="also write the first 12 photos here (JPEG) to look at")
    parser.add_argument("--out", type=Path, help="append the results as JSON lines")
    args = parser.parse_args()

    import cv2
    import torch

    from facekp_cli.data.format import read_split
    from facekp_cli.data.images import decode_image
    from facekp_cli.predict.backends import open_predictor

    torch.set_num_threads(1)  # photos per second per core
    cv2.setNumThreads(1)
    split = read_split(args.split)
    images = [decode_image(split.image_path(i)) for i in range(len(split))]
    photos = make_photos(images, split.keypoints, args.photos, args.seed)
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        for number, (photo, _) in enumerate(photos[:12]):
            cv2.imwrite(str(args.save / f"photo_{number:02d}.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    predictor = None
    if args.model is not None:
        suffix = args.model.suffix.lower()
        ckpt, model = (args.model, None) if suffix == ".ckpt" else (None, args.model)
        predictor = open_predictor(ckpt, model, "cpu")
    for name in args.finder:
        result = run_finder(name, photos, images, split.keypoints, predictor, args.min_score)
        result.update(split=str(args.split), seed=args.seed, model=str(args.model) if args.model else None)
        print(json.dumps(result))
        if args.out is not None:
            with open(args.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
