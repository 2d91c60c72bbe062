"""facekp on each image through predict_images, as `facekp infer` runs it (decoding, batching, the
model, points mapped back to the photo), with no decoding workers and one model thread: one core."""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from common import parse_args, pin, save


def main() -> None:
    args = parse_args(__doc__)
    pin(args.core)
    from pathlib import Path

    from facekp_cli.predict.backends import checkpoint_predictor, onnx_predictor, torchscript_predictor
    from facekp_cli.predict.sources import ImageSource
    from facekp_cli.predict.stream import predict_images

    model = Path(os.environ["FACEKP_BENCH_MODEL"])
    if model.suffix == ".onnx":
        predictor = onnx_predictor(model, threads=1)
    else:
        import torch

        torch.set_num_threads(1)
        opener = checkpoint_predictor if model.suffix == ".ckpt" else torchscript_predictor
        predictor = opener(model)
    paths = [line for line in args.images.read_text(encoding="utf-8").splitlines() if line]
    sources = [ImageSource(Path(p), Path(p).name) for p in paths]
    list(predict_images(predictor, sources[:8], workers=0))  # warm-up, as the peers get
    points = np.full((len(paths), 14, 2), np.nan)
    started, cpu_started = time.perf_counter(), time.process_time()
    for index, result in enumerate(predict_images(predictor, sources, workers=0)):
        if result.ok:
            points[index] = result.points
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    found = np.isfinite(points).all(axis=(1, 2))
    save(args.out, points=points, found=found, fallback=np.zeros(len(paths), bool), seconds=seconds,
         cpu_seconds=cpu_seconds)  # fmt: skip


if __name__ == "__main__":
    main()
