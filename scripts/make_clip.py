"""Write a test clip (facekp_cli/data/clips.py) from labelled face crops: for tours and manual checks.

Usage: .venv/bin/python scripts/make_clip.py KIND OUT.mp4 SPLIT_DIR [--rows 0,7] [--frames 100]
KIND is still, moving, rotating or cut; SPLIT_DIR a folder with images/ and gt.csv (real faces
from ../shared/realdata/facepoints, or a split of `facekp data synth`). The true points of every
frame are written beside the clip as OUT.points.npy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facekp_cli.data.clips import make_clip
from facekp_cli.data.format import read_split
from facekp_cli.data.images import decode_image
from facekp_cli.video.io import write_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind")
    parser.add_argument("out", type=Path)
    parser.add_argument("split", type=Path)
    parser.add_argument("--rows", default="0,1")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--face-height", type=float, default=200.0)
    args = parser.parse_args()
    split = read_split(args.split)
    faces = [(decode_image(split.image_path(i)), split.keypoints[i]) for i in map(int, args.rows.split(","))]
    clip = make_clip(args.kind, faces, frames=args.frames, face_height=args.face_height)
    write_video(args.out, clip.frames, clip.fps)
    np.save(args.out.with_suffix(".points.npy"), clip.points)
    print(f"wrote {args.out}: {args.kind}, {len(clip.frames)} frames, 640x480 at {clip.fps:g} fps")


if __name__ == "__main__":
    main()
