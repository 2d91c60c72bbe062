"""MediaPipe Face Mesh (mediapipe 0.10.21, mp.solutions, refined: 468 mesh points + 10 iris points)
on each image, its own face detector included; no face -> NaN (counted as not found)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from common import parse_args, pin, run


def main() -> None:
    args = parse_args(__doc__)
    pin(args.core)
    import mediapipe as mp

    mesh = mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.5
    )

    def landmarks_of(rgb: np.ndarray):
        result = mesh.process(rgb)
        if not result.multi_face_landmarks:
            return None, False
        height, width = rgb.shape[:2]
        marks = result.multi_face_landmarks[0].landmark
        return np.array([(m.x * width, m.y * height) for m in marks], np.float64), False

    run(args, landmarks_of, 478)


if __name__ == "__main__":
    main()
