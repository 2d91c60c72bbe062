"""Resizing, pixel normalisation and the point coordinate frames, shared by training and inference.

The network sees every image stretched to input_size x input_size and predicts each point as
(2x/W - 1, 2y/H - 1): coordinates normalised per axis to [-1, 1] of the original image, with
the origin at the top-left corner of the top-left pixel (docs/DESIGN.md). Stretching keeps that map
exact and invertible; the per-axis normalisation is also what MSE100 measures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Preprocessing:
    input_size: int = 96
    in_channels: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)

    @classmethod
    def for_channels(cls, input_size: int, in_channels: int) -> Preprocessing:
        return cls(input_size, in_channels, (0.5,) * in_channels, (0.25,) * in_channels)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        return cls(int(data["input_size"]), int(data["in_channels"]), tuple(data["mean"]), tuple(data["std"]))


def resize_to_input(image: np.ndarray, input_size: int) -> np.ndarray:
    """Stretch an (H, W, 3) uint8 image to (S, S, 3); area filter when shrinking, bilinear when enlarging."""
    import cv2

    height, width = image.shape[:2]
    if (height, width) == (input_size, input_size):
        return image
    along_x = cv2.INTER_AREA if width > input_size else cv2.INTER_LINEAR
    along_y = cv2.INTER_AREA if height > input_size else cv2.INTER_LINEAR
    if along_x != along_y:
        # One axis shrinks, the other grows: OpenCV's area filter would enlarge like nearest
        # neighbour (up to half an input pixel off), so each axis gets its own filter.
        image = cv2.resize(image, (input_size, height), interpolation=along_x)
    return cv2.resize(image, (input_size, input_size), interpolation=along_y)


def to_network_input(resized: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """(S, S, 3) uint8 RGB -> (C, S, S) float32, grey when the model takes one channel."""
    pixels = resized.astype(np.float32) / 255.0
    if prep.in_channels == 1:
        pixels = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        pixels = pixels[..., None]
    pixels = (pixels - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def prepare_image(image: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Decoded image -> network input, the exact path used by infer, eval and export verification."""
    return to_network_input(resize_to_input(image, prep.input_size), prep)


def points_to_normalised(points: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixels (..., 14, 2) -> [-1, 1] per axis; NaN stays NaN."""
    scale = np.array([width, height], dtype=np.float32)
    return (2.0 * np.asarray(points, np.float32) / scale - 1.0).astype(np.float32)


def normalised_to_points(normalised: np.ndarray, width, height) -> np.ndarray:
    """[-1, 1] per axis -> pixels; width/height may be arrays of shape (N,) for a batch."""
    normalised = np.asarray(normalised, dtype=np.float64)
    scale = np.stack([np.asarray(width, np.float64), np.asarray(height, np.float64)], axis=-1)
    if scale.ndim == 2:  # a batch: (N, 2) -> (N, 1, 2)
        scale = scale[:, None, :]
    return ((normalised + 1.0) / 2.0 * scale).astype(np.float32)
