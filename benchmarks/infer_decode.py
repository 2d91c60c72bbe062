"""Inference at the decode limit on CPU: decoding alone, the bare model and `predict_images` end to
end, side by side in one run, on photos of mixed sizes.

Photos: real face crops (../shared/realdata/facepoints, up to 160 px), a quarter of them enlarged
to a longer side of 800-1,600 px (bicubic, JPEG q90) as photos people take are; synthetic crops when
the real set is absent. Model: ResNet18 from layers, input 96, width 64, random weights (speed does
not depend on training), ONNX Runtime and torch. Rates are the best of --rounds interleaved rounds.

  - decode only, one process, one thread: the full decode (decode_image, then the resize to the
    input) against the draft decode that predict_images now uses (predict/decoding.py);
  - bare model: the backend alone on pre-made (64, 3, 96, 96) tensors;
  - end to end: predict_images over every photo (decoding, batching, the model, mapping points
    back), workers 2, batch 64: the old path (threads, full decode), threads + draft, processes + draft.
Target (issue 10): end to end >= 0.9x the bare model, judged on CPU time per image (process,
threads and decoding processes together): on a shared machine wall-clock rates mostly measure the
other work, while on two dedicated busy cores the ratio of CPU costs is the ratio of rates.
Writes the decode-limit section of docs/bench/infer.md and a row block in docs/BENCHMARKS.md;
exits 1 when the target is missed.

Usage: .venv/bin/python benchmarks/infer_decode.py [--images 800] [--rounds 2] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
# ../shared beside the checkout (the main repository) or above it (a worktree under wt/).
REAL = next(
    (p / "shared" / "realdata" / "facepoints" for p in ROOT.parents if (p / "shared" / "realdata").is_dir()),
    ROOT.parent / "shared" / "realdata" / "facepoints",
)
PAGE = ROOT / "docs" / "bench" / "infer.md"
BENCHMARKS = ROOT / "docs" / "BENCHMARKS.md"
START, END = "<!-- decode-limit:start -->", "<!-- decode-limit:end -->"
BATCH, WORKERS = 64, 2


def make_photos(folder: Path, count: int, seed: int = 0) -> tuple[list[Path], str]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    if (REAL / "images").is_dir():
        names = sorted(p.name for p in (REAL / "images").iterdir())
        chosen = [REAL / "images" / names[i] for i in rng.choice(len(names), count, replace=False)]
        what = f"{count} real face crops from shared/realdata/facepoints"
    else:
        from infer_throughput import make_images

        chosen = make_images(folder / "synth", count)
        what = f"{count} synthetic face crops"
    photos = []
    for index, source in enumerate(chosen):
        target = folder / f"{index:05d}.jpg"
        if index % 4 == 0:  # a quarter: large photos
            with Image.open(source) as image:
                image = image.convert("RGB")
                longer = int(rng.integers(800, 1601))
                scale = longer / max(image.size)
                size = (round(image.width * scale), round(image.height * scale))
                image.resize(size, Image.Resampling.BICUBIC).save(target, quality=90)
        else:
            shutil.copyfile(source, target)
        photos.append(target)
    return photos, what + ", every 4th enlarged to a longer side of 800-1,600 px (JPEG q90)"


def make_predictors(folder: Path):
    from infer_throughput import make_model

    from facekp_cli.predict.backends import checkpoint_predictor, onnx_predictor

    ckpt, onnx_path = make_model(folder)
    return {"onnx": onnx_predictor(onnx_path), "torch": checkpoint_predictor(ckpt)}


class Clock:
    """Wall time and CPU time (this process, its threads and its finished child processes)."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), _cpu()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, _cpu() - self.cpu


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def decode_rate(photos: list[Path], draft: bool) -> tuple[float, float]:
    from facekp_cli.predict.decoding import DecodeJob, decode_for_prediction
    from facekp_cli.predict.sources import ImageSource

    job = DecodeJob(96, draft=draft)
    with Clock() as clock:
        for path in photos:
            decoded = decode_for_prediction(ImageSource(path, path.name), job)
            assert decoded.error is None, decoded.error
    return len(photos) / clock.wall, clock.cpu / len(photos)


def bare_rate(predictor, seconds: float = 4.0) -> tuple[float, float]:
    batch = np.random.default_rng(0).standard_normal((BATCH, 3, 96, 96)).astype(np.float32)
    predictor.predict(batch)
    done = 0
    with Clock() as clock:
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            predictor.predict(batch)
            done += BATCH
    return done / clock.wall, clock.cpu / done


def end_to_end_rate(predictor, photos: list[Path], decoder: str, draft: bool) -> tuple[float, float]:
    from facekp_cli.predict.sources import ImageSource
    from facekp_cli.predict.stream import predict_images

    sources = [ImageSource(p, p.name) for p in photos]
    count = 0
    with Clock() as clock:
        for result in predict_images(
            predictor, sources, batch_size=BATCH, workers=WORKERS, decoder=decoder, draft=draft
        ):
            assert result.error is None, result.error
            count += 1
    return count / clock.wall, clock.cpu / count


VARIANTS = (
    ("threads, full decode (before)", "threads", False),
    ("threads, draft decode", "threads", True),
    ("processes, draft decode", "processes", True),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", default="onnx,torch")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="facekp-decode-bench-") as scratch:
        photos, what = make_photos(Path(scratch) / "photos", args.images)
        predictors = make_predictors(Path(scratch))
        backends = [b for b in args.backends.split(",") if b]
        best: dict[str, float] = {}
        cpu: dict[str, float] = {}  # CPU ms per image, the least of the rounds

        def keep(key: str, measured: tuple[float, float]) -> None:
            rate, cpu_s = measured
            best[key] = max(best.get(key, 0.0), rate)
            cpu[key] = min(cpu.get(key, float("inf")), cpu_s * 1000.0)
            print(f"  {key}: {rate:.1f} img/s, {cpu_s * 1000:.2f} CPU ms/img", flush=True)

        for round_no in range(args.rounds):
            print(f"round {round_no + 1}", flush=True)
            keep("decode full", decode_rate(photos, draft=False))
            keep("decode draft", decode_rate(photos, draft=True))
            for backend in backends:
                keep(f"{backend} bare", bare_rate(predictors[backend]))
                for label, decoder, draft in VARIANTS:
                    keep(f"{backend} {label}", end_to_end_rate(predictors[backend], photos, decoder, draft))
        sizes = [max(_size(p)) for p in photos]
    load_after = os.getloadavg()[0]

    rows = [
        "| backend | bare model | end to end: " + " | ".join(v[0] for v in VARIANTS) + " | best / bare |",
        "|---" * (len(VARIANTS) + 3) + "|",
    ]
    cpu_rows = [
        "| backend | bare model | " + " | ".join(v[0] for v in VARIANTS) + " | bare / best (>= 0.9x) |",
        "|---" * (len(VARIANTS) + 3) + "|",
    ]
    met = True
    for backend in backends:
        bare = best[f"{backend} bare"]
        rates = [best[f"{backend} {v[0]}"] for v in VARIANTS]
        cells = " | ".join(f"{r:.1f} ({r / bare:.2f}x)" for r in rates)
        rows.append(f"| {backend} | {bare:.1f} | {cells} | {max(rates[1:]) / bare:.2f}x |")
        bare_cpu = cpu[f"{backend} bare"]
        costs = [cpu[f"{backend} {v[0]}"] for v in VARIANTS]
        ratio = bare_cpu / min(costs[1:])
        met &= ratio >= 0.9
        cells = " | ".join(f"{c:.2f} ({bare_cpu / c:.2f}x)" for c in costs)
        verdict = "ok" if ratio >= 0.9 else "MISSED"
        cpu_rows.append(f"| {backend} | {bare_cpu:.2f} | {cells} | {ratio:.2f}x {verdict} |")
    command = "python benchmarks/infer_decode.py " + " ".join(sys.argv[1:])
    decode_line = (
        f"Decoding alone, one process, one thread: full decode {best['decode full']:.1f} images/s "
        f"({cpu['decode full']:.2f} CPU ms each), draft decode {best['decode draft']:.1f} images/s "
        f"({cpu['decode draft']:.2f} CPU ms each; {cpu['decode full'] / cpu['decode draft']:.1f}x less CPU)."
    )
    section = f"""{START}
## Inference at the decode limit: mixed-size photos (benchmarks/infer_decode.py)

Command: `{command}` (from the repository root, `.venv/bin` first on PATH);
{time.perf_counter() - started:.0f} s in all.
Machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; load average
{load_before:.1f} before and {load_after:.1f} after (the cores are shared with other work: rates are noisy;
each is the best of {args.rounds} interleaved rounds, all measured side by side in one run).
Photos: {what}; longer sides {min(sizes)}-{max(sizes)} px. Model: ResNet18 from layers, input 96,
width 64, random weights; batch {BATCH}, {WORKERS} decoding workers.

CPU time per image in ms (ratio: the bare model's cost / this cost; on two cores kept busy, the
ratio of rates; it does not depend on what else shares the machine, so the target is judged on it):

{chr(10).join(cpu_rows)}

Wall-clock images/s (ratio to the bare model; at this load mostly a measure of the other work):

{chr(10).join(rows)}

{decode_line}
"bare model" runs the backend alone on pre-made tensors; "end to end" is `predict_images` (what
`facekp infer` and `facekp eval` run) from the first file to the last result, pool start included.
Draft decoding: a JPEG whose shorter side is at least four times the network input is decoded by
libjpeg at 1/2, 1/4 or 1/8 scale and area-resampled over exactly the original frame (data/images.py;
tests in tests/data/test_images_draft.py check the geometry, EXIF orientations included). Complete
RGB and grey JPEGs are decoded by OpenCV's libjpeg-turbo (the same pixels as Pillow's, tested at
every scale and orientation; Pillow's per-image copies skipped); what remains per image is mostly
libjpeg's entropy decoding, which no scale skips.
{END}"""
    print(section)
    if not args.no_write:
        for path in (PAGE, BENCHMARKS):
            _write_section(path, section if path == PAGE else _short(section, cpu_rows, command))
        print(f"wrote {PAGE.relative_to(ROOT)} and {BENCHMARKS.relative_to(ROOT)}")
    sys.exit(0 if met else 1)


def _short(section: str, rows: list[str], command: str) -> str:
    return "\n".join([
        START,
        "## Inference at the decode limit (benchmarks/infer_decode.py)",
        "",
        f"`{command}`; mixed-size photos (a quarter 800-1,600 px), 2 cores; CPU ms per image (ratio: the"
        " bare model's cost / this cost). Wall-clock rates and details: docs/bench/infer.md.",
        "",
        *rows,
        END,
    ])  # fmt: skip


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def _write_section(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8")
    if START in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
