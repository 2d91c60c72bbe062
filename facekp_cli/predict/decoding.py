"""One image file -> what the model needs from it: network-sized pixels (one per face in detect
mode) and the original's size, so points map back to its pixels.

Kept apart from stream.py and free of torch and onnxruntime so that decoding processes start
quickly: everything here is picklable and imports only numpy, Pillow and OpenCV.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np

from facekp_cli.data.images import decode_image, decode_image_bytes, decode_image_for_input
from facekp_cli.errors import ImageDecodeError
from facekp_cli.frame import Preprocessing, resize_to_input
from facekp_cli.predict.detect import DEFAULT_MIN_SCORE, Box, FaceDetector, cut, is_crop
from facekp_cli.predict.sources import ImageSource


@dataclass(frozen=True)
class DecodeJob:
    """How to decode, the same for every file of a run (sent once to each decoding process)."""

    input_size: int
    detect: bool | str = False  # True: search every image for faces; "auto": search, unless it is a crop
    mean_shape: tuple[tuple[float, float], ...] | None = None
    keep_image: bool = False  # return the full decoded image too (drawing)
    draft: bool = True  # let large JPEGs decode at 1/2, 1/4 or 1/8 scale (face-crop mode only)
    finder: str = "auto"  # predict.detect.FINDERS
    min_score: float = DEFAULT_MIN_SCORE


@dataclass(frozen=True)
class Decoded:
    source: ImageSource
    width: int = 0
    height: int = 0
    inputs: tuple[np.ndarray, ...] = ()  # (S, S, 3) uint8 RGB per image (face-crop mode) or face
    boxes: tuple[tuple[Box, Box], ...] = ()  # detect mode: (detector box, crop) per input
    image: np.ndarray | None = None
    error: str | None = None
    searched: bool = False  # faces were searched (a photo): `boxes` holds them, maybe none


_DETECTOR_LOCK = threading.Lock()


@functools.cache
def _cached_detector(finder: str, min_score: float) -> FaceDetector:
    return FaceDetector(finder, min_score)


def detector(finder: str = "auto", min_score: float = DEFAULT_MIN_SCORE) -> FaceDetector:
    """One finder per process and setting, built once even when decode threads ask at once."""
    with _DETECTOR_LOCK:
        return _cached_detector(finder, min_score)


def decode_for_prediction(source: ImageSource, job: DecodeJob, data: bytes | None = None) -> Decoded:
    """Never raises: an unreadable file comes back with `error` set, so a worker reports, never dies.

    `data`: the file's bytes already read (object storage, Ray), decoded exactly as the file would be.
    """
    try:
        if job.detect is not False or job.keep_image or not job.draft:
            image = decode_image(source.path) if data is None else decode_image_bytes(data, str(source.path))
            height, width = image.shape[:2]
            pixels = image
        else:
            sized = decode_image_for_input(source.path, job.input_size, data)
            image, pixels, width, height = None, sized.pixels, sized.width, sized.height
    except ImageDecodeError as exc:
        return Decoded(source, error=str(exc))
    except Exception as exc:
        return Decoded(source, error=f"{source.path}: cannot decode image ({exc!r})")
    kept = image if job.keep_image else None
    if job.detect is False:
        return Decoded(source, width, height, (resize_to_input(pixels, job.input_size),), image=kept)
    finder = detector(job.finder, job.min_score)
    mean_shape = [list(p) for p in job.mean_shape] if job.mean_shape is not None else None
    faces = finder.detect(image)
    crops = [finder.crop(face, mean_shape) for face in faces]
    if job.detect == "auto" and is_crop(faces, crops, width, height):
        return Decoded(source, width, height, (resize_to_input(pixels, job.input_size),), image=kept)
    inputs, boxes = [], []
    for face, crop in zip(faces, crops, strict=True):
        part, cut_box = cut(image, crop)
        inputs.append(resize_to_input(part, job.input_size))
        boxes.append((face, cut_box))
    return Decoded(source, width, height, tuple(inputs), tuple(boxes), kept, searched=True)


def decode_chunk(sources: list[ImageSource], job: DecodeJob) -> list[Decoded]:
    """Several files per task: a process pool's per-task cost is paid once per chunk.

    Runs in a decoding process: the processes are the parallelism, so OpenCV gets one thread there."""
    import cv2

    cv2.setNumThreads(1)
    return [decode_for_prediction(source, job) for source in sources]


def batch_to_network_input(pixels: list[np.ndarray], prep: Preprocessing) -> np.ndarray:
    """(S, S, 3) uint8 images -> (B, C, S, S) float32: frame.to_network_input's arithmetic, in the
    same order (so the same numbers), done once per batch instead of once per image."""
    size = prep.input_size
    if not pixels:
        return np.zeros((0, prep.in_channels, size, size), np.float32)
    if prep.in_channels == 1:
        values = np.stack(pixels).astype(np.float32) / 255.0
        values = (values @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
        values = (values - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
        return np.ascontiguousarray(values.transpose(0, 3, 1, 2))
    # In place on one buffer already in network layout: the same float32 operations as above, but
    # no temporaries and no float transpose (5x less CPU; it was 5 % of `facekp infer` on 2 cores).
    values = np.empty((len(pixels), 3, size, size), np.float32)
    values[...] = np.stack(pixels).transpose(0, 3, 1, 2)
    values /= 255.0
    values -= np.asarray(prep.mean, np.float32)[:, None, None]
    values /= np.asarray(prep.std, np.float32)[:, None, None]
    return values
