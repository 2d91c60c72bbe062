"""`infer --detect`: find faces in a photo and cut the crop the model was trained on around each.

The detector is OpenCV's frontal-face Haar cascade, which ships inside opencv-python-headless
(nothing is downloaded). A Haar box is not the training crop: the crop is rebuilt from where
the model's training-set mean shape puts the eyes and mouth (ModelMeta.mean_shape, fractions of
the crop) and where those points sit in a Haar box (HAAR_LAYOUT), per axis. Without a mean shape
the box is grown by DEFAULT_MARGIN on each side.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from facekp_cli.keypoints import LEFT_EYE_OUTER, MOUTH_CENTER, RIGHT_EYE_OUTER

HAAR_FILE = "haarcascade_frontalface_default.xml"
# Where the outer eye corners and the mouth centre sit in a haarcascade_frontalface_default box
# (fractions of its width and height), measured on frontal faces: the eyes' outer corners at
# about a fifth of the box from each side, 39% down; the mouth centre 79% down.
HAAR_LAYOUT = {"eye_outer_left_x": 0.20, "eye_outer_right_x": 0.80, "eye_y": 0.39, "mouth_y": 0.79}
DEFAULT_MARGIN = 0.25  # fraction of the box added on each side when the model has no mean shape
DETECT_MAX_SIDE = 1280  # photos are searched at most this large (boxes are scaled back)


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    width: float
    height: float

    def to_dict(self) -> dict[str, float]:
        return {"x": round(self.x, 2), "y": round(self.y, 2), "width": round(self.width, 2),
                "height": round(self.height, 2)}  # fmt: skip


def crop_for_face(face: Box, mean_shape: list[list[float]] | None) -> Box:
    """The training-style crop around a detected face, in photo pixels."""
    if mean_shape is None:
        m = DEFAULT_MARGIN
        return Box(face.x - m * face.width, face.y - m * face.height, face.width * (1 + 2 * m),
                   face.height * (1 + 2 * m))  # fmt: skip
    layout = np.asarray(mean_shape, np.float64)
    left_x, right_x = layout[LEFT_EYE_OUTER, 0], layout[RIGHT_EYE_OUTER, 0]
    eye_y = (layout[LEFT_EYE_OUTER, 1] + layout[RIGHT_EYE_OUTER, 1]) / 2
    mouth_y = layout[MOUTH_CENTER, 1]
    # crop size in face-box units, so that the anchors land where training put them
    crop_w = (HAAR_LAYOUT["eye_outer_right_x"] - HAAR_LAYOUT["eye_outer_left_x"]) / (right_x - left_x)
    crop_h = (HAAR_LAYOUT["mouth_y"] - HAAR_LAYOUT["eye_y"]) / (mouth_y - eye_y)
    x0 = HAAR_LAYOUT["eye_outer_left_x"] - left_x * crop_w
    y0 = HAAR_LAYOUT["eye_y"] - eye_y * crop_h
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


class FaceDetector:
    """Haar cascade face detection; one classifier per thread (decode workers call it in parallel)."""

    def __init__(self, min_neighbors: int = 5) -> None:
        self.min_neighbors = min_neighbors
        self._local = threading.local()

    def _cascade(self):
        import cv2

        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = cv2.CascadeClassifier(cv2.data.haarcascades + HAAR_FILE)
            if cascade.empty():  # pragma: no cover - a broken OpenCV install
                from facekp_cli.errors import ModelFileError

                raise ModelFileError(f"{cv2.data.haarcascades + HAAR_FILE}: cannot load the face detector")
            self._local.cascade = cascade
        return cascade

    def detect(self, image: np.ndarray) -> list[Box]:
        """Faces in an RGB photo, largest first."""
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
        found = self._cascade().detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(min_side, min_side)
        )
        boxes = [
            Box(x / scale, y / scale, w / scale, h / scale) for x, y, w, h in np.asarray(found).reshape(-1, 4)
        ]
        return sorted(boxes, key=lambda b: -b.width * b.height)
