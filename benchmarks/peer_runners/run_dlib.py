"""dlib's 68-point shape predictor (face-recognition-models' shape_predictor_68_face_landmarks.dat)
on each image. The box: dlib's own HOG face detector on the image (upsampled once when the image is
small); when it finds no face, the whole image (a face crop) is the box, counted as a fallback.
With DLIB_BOX=crop the whole image is always the box (no detector: face crops only)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from common import parse_args, pin, run

SMALL = 320  # images whose shorter side is below this are upsampled once for the detector


def model_path() -> str:
    # Found without importing the package, whose __init__ needs pkg_resources.
    spec = importlib.util.find_spec("face_recognition_models")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return str(folder / "models" / "shape_predictor_68_face_landmarks.dat")


def main() -> None:
    args = parse_args(__doc__)
    pin(args.core)
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(model_path())
    whole_crop = os.environ.get("DLIB_BOX") == "crop"

    def landmarks_of(rgb: np.ndarray):
        height, width = rgb.shape[:2]
        if whole_crop:
            return landmarks(rgb, dlib.rectangle(0, 0, width - 1, height - 1)), False
        faces = detector(rgb, 1 if min(height, width) < SMALL else 0)
        if len(faces):
            box, used_fallback = max(faces, key=lambda r: r.area()), False
        else:
            box, used_fallback = dlib.rectangle(0, 0, width - 1, height - 1), True
        return landmarks(rgb, box), used_fallback

    def landmarks(rgb: np.ndarray, box) -> np.ndarray:
        return np.array([(p.x, p.y) for p in predictor(rgb, box).parts()], np.float64)

    run(args, landmarks_of, 68)


if __name__ == "__main__":
    main()
