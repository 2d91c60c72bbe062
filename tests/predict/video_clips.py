"""Short test clips on disk: real faces from ../shared/realdata (when present) and synthetic ones."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

REAL_FACES = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "facepoints"
CLIP_SIZE = (320, 240)
CLIP_FRAMES = 30
# frontal, upright, fully labelled faces from the real set (rows of its gt.csv)
REAL_ROWS = (0, 5, 7)


def read_labels(gt_csv: Path, rows) -> list[tuple[str, np.ndarray]]:
    with open(gt_csv, encoding="utf-8", newline="") as fh:
        table = list(csv.reader(fh))[1:]
    return [(table[i][0], np.array([float(v) for v in table[i][1:]]).reshape(14, 2)) for i in rows]


def real_faces() -> list[tuple[np.ndarray, np.ndarray]]:
    from facekp_cli.data.images import decode_image

    if not (REAL_FACES / "gt.csv").is_file():
        pytest.skip(f"real faces not available at {REAL_FACES}")
    return [
        (decode_image(REAL_FACES / "images" / n), p) for n, p in read_labels(REAL_FACES / "gt.csv", REAL_ROWS)
    ]


def synthetic_faces(dataset_root: Path, count: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    from facekp_cli.data.format import read_split
    from facekp_cli.data.images import decode_image

    split = read_split(dataset_root / "test")
    return [(decode_image(split.image_path(i)), split.keypoints[i]) for i in range(count)]


def write_clip(path: Path, kind: str, faces, **options):
    """Make a clip (facekp_cli.data.clips) and write it; returns the Clip with its true points."""
    from facekp_cli.data.clips import make_clip
    from facekp_cli.video.io import write_video

    options = {"frames": CLIP_FRAMES, "size": CLIP_SIZE, "face_height": 120.0, **options}
    clip = make_clip(kind, faces, **options)
    write_video(path, clip.frames, clip.fps)
    return clip
