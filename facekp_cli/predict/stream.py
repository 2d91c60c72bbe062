"""Batched, streamed prediction over many image files.

Decoding (and face detection) runs in a bounded pool of background workers while the model runs
on the previous batch; at most `prefetch + 1` batches of decoded images are alive at any time, and
results come out in input order as small records, so memory stays flat however many images there
are. Workers are processes for long runs with several workers (chunks of files per task,
network-sized uint8 pixels back: processes do not contend for one interpreter), threads otherwise
and whenever whole images must come back for drawing (nothing to start, no copies). Large JPEGs
are decoded at 1/2, 1/4 or 1/8 scale (data/images.py): most of the cost of real photos.
docs/bench/infer.md has the measurements behind these choices.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

import numpy as np

from facekp_cli.frame import normalised_to_points
from facekp_cli.predict.backends import Predictor
from facekp_cli.predict.decoding import (
    Decoded,
    DecodeJob,
    batch_to_network_input,
    decode_chunk,
    decode_for_prediction,
    detector,
)
from facekp_cli.predict.detect import DEFAULT_MIN_SCORE, Box
from facekp_cli.predict.sources import ImageSource

DECODERS = ("auto", "threads", "processes")
PROCESS_CHUNK = 8  # files per process task
# "auto" starts processes only when a run is long enough to repay starting them (about 0.5 s) and
# there are several workers: on 2 cores processes did not beat 2 threads (docs/bench/infer.md),
# while with many workers threads contend for the interpreter (10 threads decoded slower than 4 on
# a 16-core machine, issue 10).
PROCESSES_FROM_IMAGES = 512
PROCESSES_FROM_WORKERS = 4


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


NOT_FINITE = "the model gave non-finite points (NaN or inf): its weights are broken (a diverged training?)"


def _to_prediction(decoded: Decoded, outputs: np.ndarray) -> ImagePrediction:
    if decoded.error is not None:
        return ImagePrediction(decoded.source, error=decoded.error)
    if not np.isfinite(outputs).all():  # a failed image, never a bare NaN in the JSON
        return ImagePrediction(decoded.source, error=NOT_FINITE)
    if not decoded.searched:
        points = normalised_to_points(outputs[0], decoded.width, decoded.height)
        return ImagePrediction(decoded.source, decoded.width, decoded.height, points, image=decoded.image)
    faces = []
    for (face, crop), out in zip(decoded.boxes, outputs, strict=True):
        points = normalised_to_points(out, crop.width, crop.height) + np.float32([crop.x, crop.y])
        faces.append(FacePrediction(face, crop, points.astype(np.float32)))
    return ImagePrediction(
        decoded.source, decoded.width, decoded.height, faces=tuple(faces), image=decoded.image
    )


def predict_decoded(predictor: Predictor, batch: Sequence[Decoded]) -> list[ImagePrediction]:
    """One model call for a batch of decoded files (every face of each searched photo); the step
    shared by this stream and the Ray engine's model actors (services/infer_ray.py)."""
    inputs = [x for decoded in batch for x in decoded.inputs]
    outputs = (
        predictor.predict(batch_to_network_input(inputs, predictor.meta.preprocessing))
        if inputs
        else np.zeros((0, 0, 2), np.float32)
    )
    results, start = [], 0
    for decoded in batch:
        count = len(decoded.inputs)
        results.append(_to_prediction(decoded, outputs[start : start + count]))
        start += count
    return results


def choose_decoder(decoder: str, workers: int, images: int, keep_images: bool) -> str:
    """ "threads" or "processes" for a run; "auto" picks processes for long runs that draw nothing."""
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder '{decoder}' (use {', '.join(DECODERS)})")
    if decoder != "auto":
        return decoder
    many = workers >= PROCESSES_FROM_WORKERS and images >= PROCESSES_FROM_IMAGES
    return "processes" if many and not keep_images else "threads"


def _pool(kind: str, workers: int) -> Executor:
    if kind == "processes":
        # spawn, not fork: the parent already runs torch / onnxruntime threads, which fork would copy
        # mid-flight; the children import only numpy, Pillow and OpenCV (predict/decoding.py).
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    return ThreadPoolExecutor(workers, thread_name_prefix="facekp-decode")


def predict_images(
    predictor: Predictor,
    sources: Sequence[ImageSource],
    *,
    batch_size: int = 64,
    workers: int = 2,
    detect: bool | str = False,
    keep_images: bool = False,
    prefetch: int = 2,
    decoder: str = "auto",
    draft: bool = True,
    finder: str = "auto",
    min_score: float = DEFAULT_MIN_SCORE,
) -> Iterator[ImagePrediction]:
    """Yield one ImagePrediction per source, in order; unreadable files come back with `error` set.

    detect: False (every image is a face crop), True (every image is searched for faces) or "auto"
    (searched, unless the finder sees one face filling it: then used as a crop).
    decoder: "threads", "processes" or "auto" (choose_decoder); draft=False decodes every JPEG in
    full (only for measuring what draft decoding saves).
    """
    prep = predictor.meta.preprocessing
    mean_shape = predictor.meta.mean_shape
    job = DecodeJob(
        prep.input_size,
        detect,
        tuple(tuple(p) for p in mean_shape) if mean_shape is not None else None,
        keep_images,
        draft,
        finder,
        min_score,
    )
    if detect is not False:
        detector(finder, min_score)  # built here, before the decode threads ask for it at once
    kind = choose_decoder(decoder, workers, len(sources), keep_images)
    chunk = PROCESS_CHUNK if kind == "processes" else 1
    window = batch_size * (prefetch + 1)
    pending: deque[Future[list[Decoded]]] = deque()
    ready: deque[Decoded] = deque()
    upcoming = iter(sources)
    pool = _pool(kind, workers) if workers > 0 else None
    # The decode workers are the parallelism: OpenCV's own thread pool inside each worker's resize
    # would oversubscribe the cores the model needs (measured: 3-8 % less CPU per image on 2 cores).
    cv2_threads = _single_threaded_cv2() if kind == "threads" and pool is not None else None
    try:
        while True:
            if pool is not None:
                while (len(pending) * chunk + len(ready)) < window:
                    files = list(islice(upcoming, chunk))
                    if not files:
                        break
                    if chunk == 1:
                        pending.append(pool.submit(_decode_one, files[0], job))
                    else:
                        pending.append(pool.submit(decode_chunk, files, job))
                while len(ready) < batch_size and pending:
                    ready.extend(pending.popleft().result())
                batch = [ready.popleft() for _ in range(min(batch_size, len(ready)))]
            else:
                batch = [decode_for_prediction(source, job) for source in islice(upcoming, batch_size)]
            if not batch:
                return
            yield from predict_decoded(predictor, batch)
    finally:
        if pool is not None:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
        if cv2_threads is not None:
            import cv2

            cv2.setNumThreads(cv2_threads)


def _single_threaded_cv2() -> int:
    """Set OpenCV to one thread; returns the count to restore."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    return before


def _decode_one(source: ImageSource, job: DecodeJob) -> list[Decoded]:
    return [decode_for_prediction(source, job)]
