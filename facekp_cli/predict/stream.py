"""Batched, streamed prediction over many image files.

Decoding (and face detection) runs in a bounded pool of background threads while the model
runs on the previous batch; at most `prefetch + 1` batches of decoded images are alive at any
time, and results come out in input order as small records, so memory stays flat however many
images there are. Threads, not processes: PIL, OpenCV and numpy release the GIL while they work,
and threads cost nothing to start or to hand arrays back from.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

import numpy as np

from facekp_cli.data.images import decode_image
from facekp_cli.errors import ImageDecodeError
from facekp_cli.frame import Preprocessing, normalised_to_points, prepare_image
from facekp_cli.predict.backends import Predictor
from facekp_cli.predict.detect import Box, FaceDetector, crop_for_face, cut
from facekp_cli.predict.sources import ImageSource


@dataclass(frozen=True)
class FacePrediction:
    box: Box  # the detector's box
    crop: Box  # the region the model saw
    points: np.ndarray  # (K, 2) photo pixels


@dataclass(frozen=True)
class ImagePrediction:
    source: ImageSource
    width: int = 0
    height: int = 0
    points: np.ndarray | None = None  # (K, 2) pixels of the displayed image (face-crop mode)
    faces: tuple[FacePrediction, ...] | None = None  # detect mode
    error: str | None = None
    image: np.ndarray | None = None  # the decoded image, only when asked for (drawing)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class _Decoded:
    source: ImageSource
    width: int = 0
    height: int = 0
    inputs: tuple[np.ndarray, ...] = ()
    boxes: tuple[tuple[Box, Box], ...] = ()  # detect mode: (detector box, crop) per input
    image: np.ndarray | None = None
    error: str | None = None


def _decode(
    source: ImageSource, prep: Preprocessing, detector: FaceDetector | None, mean_shape, keep_image: bool
) -> _Decoded:
    try:
        image = decode_image(source.path)
    except ImageDecodeError as exc:
        return _Decoded(source, error=str(exc))
    except Exception as exc:  # a worker must report, never kill the run
        return _Decoded(source, error=f"{source.path}: cannot decode image ({exc!r})")
    height, width = image.shape[:2]
    kept = image if keep_image else None
    if detector is None:
        return _Decoded(source, width, height, (prepare_image(image, prep),), image=kept)
    inputs, boxes = [], []
    for face in detector.detect(image):
        part, crop = cut(image, crop_for_face(face, mean_shape))
        inputs.append(prepare_image(part, prep))
        boxes.append((face, crop))
    return _Decoded(source, width, height, tuple(inputs), tuple(boxes), kept)


def _to_prediction(decoded: _Decoded, outputs: np.ndarray, detect: bool) -> ImagePrediction:
    if decoded.error is not None:
        return ImagePrediction(decoded.source, error=decoded.error)
    if not detect:
        points = normalised_to_points(outputs[0], decoded.width, decoded.height)
        return ImagePrediction(decoded.source, decoded.width, decoded.height, points, image=decoded.image)
    faces = []
    for (face, crop), out in zip(decoded.boxes, outputs, strict=True):
        points = normalised_to_points(out, crop.width, crop.height) + np.float32([crop.x, crop.y])
        faces.append(FacePrediction(face, crop, points.astype(np.float32)))
    return ImagePrediction(
        decoded.source, decoded.width, decoded.height, faces=tuple(faces), image=decoded.image
    )


def predict_images(
    predictor: Predictor,
    sources: Sequence[ImageSource],
    *,
    batch_size: int = 64,
    workers: int = 2,
    detect: bool = False,
    keep_images: bool = False,
    prefetch: int = 2,
) -> Iterator[ImagePrediction]:
    """Yield one ImagePrediction per source, in order; unreadable files come back with `error` set."""
    prep = predictor.meta.preprocessing
    detector = FaceDetector() if detect else None
    mean_shape = predictor.meta.mean_shape
    args = (prep, detector, mean_shape, keep_images)
    window = batch_size * (prefetch + 1)
    pending: deque[Future[_Decoded]] = deque()
    upcoming = iter(sources)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="facekp-decode") if workers > 0 else None
    try:
        while True:
            if pool is not None:
                for source in upcoming:
                    pending.append(pool.submit(_decode, source, *args))
                    if len(pending) >= window:
                        break
                batch = [pending.popleft().result() for _ in range(min(batch_size, len(pending)))]
            else:
                batch = [_decode(source, *args) for source in islice(upcoming, batch_size)]
            if not batch:
                return
            inputs = [x for decoded in batch for x in decoded.inputs]
            outputs = predictor.predict(np.stack(inputs)) if inputs else np.zeros((0, 0, 2), np.float32)
            start = 0
            for decoded in batch:
                count = len(decoded.inputs)
                yield _to_prediction(decoded, outputs[start : start + count], detect)
                start += count
    finally:
        if pool is not None:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
