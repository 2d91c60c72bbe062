"""Short video clips with exact keypoints per frame, made from labelled face crops.

A face crop (real or synthetic, with its 14 labels) is pasted onto a plain textured background by
a similarity transform that changes from frame to frame, so the labels follow exactly. The kinds
are the cases a tracker and a smoother must handle: a still face (only sensor noise changes, so
any movement of the points is jitter), a face moving across the frame, a face rolling its head,
and a cut from one face to another. Used by the video tests and benchmarks; nothing is downloaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("still", "moving", "rotating", "cut")
FRAME_SIZE = (640, 480)


@dataclass(frozen=True)
class Clip:
    frames: list[np.ndarray]  # (H, W, 3) uint8 RGB
    points: np.ndarray  # (T, 14, 2) frame pixels
    face_ids: np.ndarray  # (T,) which face is on screen (changes at a cut)
    fps: float


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    import cv2

    low = rng.uniform(60, 200, size=(3, 4, 3)).astype(np.float32)
    image = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(image, 0, 255).astype(np.uint8)


def _similarity(scale: float, angle_deg: float, centre_from: np.ndarray, centre_to: np.ndarray) -> np.ndarray:
    """2x3 matrix: rotate by angle and scale about centre_from, then move it to centre_to."""
    a = math.radians(angle_deg)
    rot = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    shift = np.asarray(centre_to, np.float64) - rot @ np.asarray(centre_from, np.float64)
    return np.hstack([rot, shift[:, None]])


def paste(background: np.ndarray, face: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The face crop warped by `matrix` onto a copy of the background, its edges feathered."""
    import cv2

    height, width = background.shape[:2]
    mask = np.zeros(face.shape[:2], np.float32)
    border = max(2, min(face.shape[:2]) // 16)
    mask[border:-border, border:-border] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), border / 2)
    warped = cv2.warpAffine(face, matrix, (width, height), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_LINEAR)[..., None]
    background = background.astype(np.float32)
    return (background * (1 - alpha) + warped * alpha).astype(np.uint8)  # float32 throughout: fast


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def make_clip(
    kind: str,
    faces: list[tuple[np.ndarray, np.ndarray]],
    *,
    frames: int = 50,
    size: tuple[int, int] = FRAME_SIZE,
    face_height: float = 200.0,
    noise: float = 4.0,
    fps: float = 25.0,
    seed: int = 0,
) -> Clip:
    """A clip of `kind` from (RGB crop, (14, 2) labels) faces; `cut` needs two faces.

    moving: the face crosses 60% of the frame width at constant speed; rotating: its roll sweeps
    -25..+25 degrees; cut: the first face for half the clip, then the second elsewhere in another
    scene (a new background).
    `noise` is the per-frame Gaussian sensor noise (grey levels), fresh every frame.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown clip kind {kind!r} (use {', '.join(KINDS)})")
    if kind == "cut" and len(faces) < 2:
        raise ValueError("a cut needs two faces")
    rng = np.random.default_rng(seed)
    width, height = size
    backgrounds = [_background(rng, width, height) for _ in range(2)]  # a cut changes the scene
    out_frames, out_points, ids = [], [], []
    for t in range(frames):
        progress = t / max(frames - 1, 1)
        which = 1 if kind == "cut" and t >= frames // 2 else 0
        image, labels = faces[which]
        scale = face_height / image.shape[0]
        centre_from = np.array([image.shape[1] / 2, image.shape[0] / 2])
        angle, centre = 0.0, np.array([width / 2, height / 2])
        if kind == "moving":
            centre = np.array([width * (0.2 + 0.6 * progress), height / 2])
        elif kind == "rotating":
            angle = -25.0 + 50.0 * progress
        elif kind == "cut":
            centre = np.array([width * (0.3 if which == 0 else 0.7), height * (0.45 if which == 0 else 0.55)])
        matrix = _similarity(scale, angle, centre_from, centre)
        frame = paste(backgrounds[which], image, matrix)
        if noise > 0:
            grain = rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(noise)
            frame = np.clip(frame + grain, 0, 255).astype(np.uint8)
        out_frames.append(frame)
        out_points.append(transform_points(np.asarray(labels, np.float64), matrix))
        ids.append(which)
    return Clip(out_frames, np.stack(out_points), np.asarray(ids), fps)
