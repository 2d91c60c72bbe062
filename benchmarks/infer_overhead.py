"""Issue 22, part 3: end to end `predict_images` vs the bare model on mixed-size photos, with the
batch normalisation before (allocating, a float transpose) and after (in place) this change,
interleaved in one run so both see the same machine load. Same photos, model and CPU-time
accounting as benchmarks/infer_decode.py (threads + draft decode, 2 workers, batch 64).

    .venv/bin/python benchmarks/infer_overhead.py --images 400 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import infer_decode as bench

from facekp_cli.predict import stream


def normalise_before(pixels: list[np.ndarray], prep) -> np.ndarray:
    """predict/decoding.py's batch_to_network_input before issue 22 (3-channel path)."""
    values = np.stack(pixels).astype(np.float32) / 255.0
    values = (values - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
    return np.ascontiguousarray(values.transpose(0, 3, 1, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="onnx,torch")
    args = parser.parse_args()
    after = stream.batch_to_network_input
    loads = [os.getloadavg()[0]]
    cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="facekp-overhead-") as scratch:
        photos, what = bench.make_photos(Path(scratch) / "photos", args.images)
        predictors = bench.make_predictors(Path(scratch))
        for round_no in range(args.rounds):
            for backend in args.backends.split(","):
                runs = [("bare", None), ("before", normalise_before), ("after", after)]
                for label, normalise in runs:
                    if normalise is None:
                        _, cost = bench.bare_rate(predictors[backend])
                    else:
                        stream.batch_to_network_input = normalise
                        _, cost = bench.end_to_end_rate(predictors[backend], photos, "threads", True)
                    key = f"{backend} {label}"
                    cpu[key] = min(cpu.get(key, float("inf")), cost * 1000)
                    loads.append(os.getloadavg()[0])
                    print(f"round {round_no + 1} {key}: {cost * 1000:.2f} CPU ms/img", flush=True)
        stream.batch_to_network_input = after
    rows = {}
    for backend in args.backends.split(","):
        bare = cpu[f"{backend} bare"]
        rows[backend] = {
            "bare_cpu_ms": round(bare, 2),
            **{f"{v}_cpu_ms": round(cpu[f"{backend} {v}"], 2) for v in ("before", "after")},
            **{f"{v}_ratio": round(bare / cpu[f"{backend} {v}"], 3) for v in ("before", "after")},
        }
    loads_seen = [round(min(loads), 1), round(max(loads), 1)]
    print(json.dumps({"photos": what, "rounds": args.rounds, "load_min_max": loads_seen, **rows}))


if __name__ == "__main__":
    main()
