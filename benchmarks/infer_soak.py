"""Soak: `facekp infer` over 100,000 small files keeps memory flat and throughput steady.

Runs the same command over 10,000 and then 100,000 files, each in a fresh process, writing
streamed JSON Lines (`--out preds.jsonl`). Peak RSS is /usr/bin/time -v's "Maximum resident set
size" of the `facekp` process; while it runs, its resident memory (/proc/PID/status VmRSS) and the
number of lines in the output are sampled every few seconds, which gives the memory curve and the
throughput per tenth of the run. Checks: peak RSS at 100k <= 1.2x that at 10k; every file has
exactly one line; the slowest tenth of the 100k run (the first, warm-up, aside) runs at >= 0.7x
the median tenth.

Files: 200 distinct synthetic face crops (`synthesize`), shrunk to 40 px JPEGs and hard-linked to
the wanted number of names. Model: a ResNet18 of width 8 with a 32 px input and random weights,
as a checkpoint (what matters here is facekp's own bookkeeping, not the network's speed).

Usage: .venv/bin/python benchmarks/infer_soak.py [--big 100000] [--small 10000]
       [--out docs/bench/reliability.md]   (appends its section, replacing an older one)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SECTION = "## Soak: `facekp infer` over 100,000 small files"


def small_jpegs(folder: Path, count: int, side: int = 40) -> list[Path]:
    from PIL import Image

    from facekp_cli.data.synth.generator import synthesize

    synthesize(folder / "faces_data", count, seed=0, test_fraction=0.1, workers=1)
    out = folder / "distinct"
    out.mkdir()
    for split in ("train", "test"):
        for path in sorted((folder / "faces_data" / split / "images").iterdir()):
            image = Image.open(path).convert("RGB").resize((side, side), Image.Resampling.BILINEAR)
            image.save(out / f"{split}_{path.stem}.jpg", quality=90)
    shutil.rmtree(folder / "faces_data")
    return sorted(out.iterdir())


def make_corpus(folder: Path, total: int, distinct: list[Path]) -> None:
    folder.mkdir(parents=True)
    for i in range(total):
        os.link(distinct[i % len(distinct)], folder / f"{i:06d}.jpg")


def _child_pid(parent: int) -> int | None:
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _rss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(found.group(1)) / 1024 if found else None


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except OSError:
        return 0


def run_infer(images: Path, model: Path, out: Path, every_s: float) -> dict:
    cmd = [
        str(BIN / "facekp"),
        "-q",
        "infer",
        str(images),
        "--no-detect",
        "--ckpt",
        str(model),
        "--out",
        str(out),
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd], stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float | None, int]] = []  # (seconds, RSS MB, lines written)
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every_s):
            child = _child_pid(proc.pid)
            samples.append((time.perf_counter() - started, _rss_mb(child) if child else None, _lines(out)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate(timeout=7200)
    stop.set()
    sampler.join()
    wall = time.perf_counter() - started
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1))
    return {"code": proc.returncode, "wall": wall, "rss_mb": rss_kb / 1024, "samples": samples,
            "command": " ".join(cmd[0:1]).replace(str(BIN) + "/", "") + " " + " ".join(cmd[1:])}  # fmt: skip


def tenths(samples: list[tuple[float, float | None, int]], total: int) -> list[float]:
    """Files per second in each tenth of the files, from the sampled line counts."""
    rates = []
    for k in range(10):
        lo, hi = total * k / 10, total * (k + 1) / 10
        inside = [(t, n) for t, _, n in samples if lo <= n - 1 <= hi]  # minus the header line
        if len(inside) >= 2 and inside[-1][1] > inside[0][1]:
            rates.append((inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]))
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--every", type=float, default=2.0, help="sampling interval, seconds")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "reliability.md")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests" / "reliability"))
    from untrained_checkpoint import write_untrained_checkpoint

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="facekp-soak-") as tmp:
        work = Path(tmp)
        distinct = small_jpegs(work, 200)
        model = write_untrained_checkpoint(work / "soak.ckpt", input_size=32, width=8)
        for total in (args.small, args.big):
            folder = work / f"images_{total}"
            make_corpus(folder, total, distinct)
            out = work / f"preds_{total}.jsonl"
            result = run_infer(folder, model, out, args.every)
            lines = out.read_text().splitlines()
            entries = [json.loads(line) for line in lines[1:-1]]
            paths = {e["path"] for e in entries}
            result["entries"], result["unique"] = len(entries), len(paths)
            result["with_points"] = sum(1 for e in entries if len(e.get("points", {})) == 14)
            result["rates"] = tenths(result["samples"], total)
            rows.append((total, result))
            shutil.rmtree(folder)
            summary = f"{result['rss_mb']:.0f} MB, {result['wall']:.1f} s, tenths {result['rates']}"
            print(f"{total} files: exit {result['code']}, {result['entries']} entries, {summary}", flush=True)
    (small_n, small), (big_n, big) = rows
    ratio = big["rss_mb"] / small["rss_mb"]
    steady = big["rates"][1:]
    slowest = min(steady) / statistics.median(steady) if len(steady) >= 3 else float("nan")
    counts_ok = all(r["code"] == 0 and r["entries"] == r["unique"] == r["with_points"] == n for n, r in rows)
    all_ok = counts_ok and ratio <= 1.2 and slowest >= 0.7
    rss_curve = [s[1] for s in big["samples"] if s[1] is not None]
    picks = [rss_curve[round(i * (len(rss_curve) - 1) / 10)] for i in range(11)] if rss_curve else []
    table = "\n".join(
        f"| {n} | {r['code']} | {r['entries']} | {r['with_points']} | {r['rss_mb']:.0f} MB | "
        f"{r['wall']:.1f} s | {n / r['wall']:.0f} |"
        for n, r in rows
    )
    text = f"""{SECTION}

Command: `.venv/bin/python benchmarks/infer_soak.py` (from the repository root);
{time.perf_counter() - started:.0f} s in all. Machine: {os.cpu_count()} CPUs, {platform.machine()},
Python {platform.python_version()}; load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after
(the cores are shared with other work).
Each run is one fresh process: `/usr/bin/time -v facekp -q infer DIR --ckpt soak.ckpt --out preds.jsonl`
(ResNet18 width 8, 32 px input, random weights; 200 distinct 40 px JPEGs hard-linked to N names).

| files | exit | JSONL entries | with 14 points | peak RSS | wall | files/s |
|---|---|---|---|---|---|---|
{table}

Peak RSS, {big_n} / {small_n} files: {ratio:.2f}x (target <= 1.2x): {"ok" if ratio <= 1.2 else "MISSED"}.
Resident memory of the {big_n}-file run at each tenth of its wall time (MB):
{", ".join(f"{v:.0f}" for v in picks)}.
Throughput per tenth of the {big_n} files (files/s): {", ".join(f"{v:.0f}" for v in big["rates"])};
slowest tenth after the first / median: {slowest:.2f} (target >= 0.7): {"ok" if slowest >= 0.7 else "MISSED"}.

All checks: {"met" if all_ok else "NOT MET"}.
"""
    old = args.out.read_text() if args.out.is_file() else ""
    kept = old.split(SECTION)[0].rstrip() + "\n\n" if old else ""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(kept + text)
    print(text)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
