"""`facekp infer --engine ray` against `facekp infer` (one process), on the same JPEG face crops and
the same default-sized network (input 96, width 64, random weights: speed does not depend on them).

Runs, each a fresh `facekp` process (output piped: plain progress lines, no bars):
  - local: `facekp infer DIR --out preds.jsonl` (the single-process engine);
  - ray, 1 model actor and 2 model actors, on a local Ray cluster of `--cpus` CPUs started by the
    command (`--set ray.num_cpus=...`).
For each: wall time of the whole command (start-up, model load, cluster start included) and the
rate the command reports (its prediction loop only). Ray's per-image overhead is the extra time per
image of its loop against the local loop, (1/ray_rate - 1/local_rate); its fixed cost is the wall
time not spent in the loop. Every figure is checked: the shards hold exactly N entries with no
error, and each reported rate is recomputed from the summary the run wrote (images / seconds).
Writes docs/bench/ray.md.

Usage: .venv/bin/python benchmarks/ray_infer.py [--images 400] [--cpus 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from infer_throughput import make_images, make_model  # noqa: E402 - the same images and network


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "facekp"), *args], capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"facekp {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stdout


def reported_rate(stdout: str) -> float:
    return float(re.search(r"\(([0-9.]+) images/s\)", stdout).group(1))


def check_local(out: Path, count: int) -> float:
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    entries = [e for e in lines if "path" in e]
    assert len(entries) == count and not any("error" in e for e in entries), "local run lost images"
    summary = lines[-1]["summary"]
    return summary["images"] / summary["seconds"]


def check_ray(out: Path, count: int) -> float:
    entries = []
    for shard in out.glob("part-*.jsonl"):
        records = [json.loads(line) for line in shard.read_text().splitlines()]
        entries += [r for r in records if "path" in r]  # the header holds "schema", the last "summary"
    names = {e["name"] for e in entries}
    assert len(entries) == len(names) == count and not any("error" in e for e in entries), "ray lost images"
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    return summary["images"] / summary["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "ray.md")
    args = parser.parse_args()
    rows, loads = [], [uptime()]
    with tempfile.TemporaryDirectory(prefix="facekp-bench-ray-") as tmp:
        work = Path(tmp)
        images = make_images(work, args.images)
        ckpt, _ = make_model(work)
        folder = str(images[0].parent)
        count = len(images)

        wall, stdout = run(
            ["infer", folder, "--no-detect", "--ckpt", str(ckpt), "--out", str(work / "local.jsonl")]
        )
        rate = reported_rate(stdout)
        check = check_local(work / "local.jsonl", count)
        rows.append(("facekp infer (one process)", wall, rate, check))
        loads.append(uptime())
        local_rate = rate
        for actors in (1, 2):
            # the actors take most CPUs; decoding and writing tasks reserve a quarter CPU each
            per_actor = min(1.0, (args.cpus - 0.5) / actors)
            sets = ["--set", f"ray.num_cpus={args.cpus}", "--set", f"ray.pool_size={actors}"]
            sets += ["--set", f"ray.cpus_per_actor={per_actor:g}"]
            out = work / f"ray{actors}"
            wall, stdout = run(
                [
                    *sets,
                    "infer",
                    folder,
                    "--no-detect",
                    "--engine",
                    "ray",
                    "--ckpt",
                    str(ckpt),
                    "--out",
                    str(out),
                ]
            )
            rate = reported_rate(stdout)
            check = check_ray(out, count)
            rows.append(
                (f"--engine ray, {actors} model actor(s) ({per_actor:g} CPU each)", wall, rate, check)
            )
            loads.append(uptime())

    lines = [
        "# Batch inference on Ray against `facekp infer`",
        "",
        f"Command: `.venv/bin/python benchmarks/ray_infer.py --images {args.images} --cpus {args.cpus}`",
        f"({count} JPEG face crops, input 96, width 64, PyTorch checkpoint on the CPU, batch 64; "
        f"a local Ray cluster of {args.cpus} CPUs started by each Ray run).",
        "",
        "| run | wall time of the command (s) | prediction loop (images/s, reported) | "
        "recomputed from the run's summary (images/s) |",
        "|---|---:|---:|---:|",
    ]
    for name, wall, rate, check in rows:
        lines.append(f"| {name} | {wall:.1f} | {rate:.1f} | {check:.1f} |")
    lines.append("")
    for name, wall, rate, _ in rows[1:]:
        overhead_ms = (1 / rate - 1 / local_rate) * 1000
        fixed = wall - count / rate
        lines.append(
            f"- {name}: {overhead_ms:+.1f} ms per image against the local loop; "
            f"{fixed:.1f} s of the wall time outside the loop (cluster start, actor start, model load)."
        )
    local_fixed = rows[0][1] - count / rows[0][2]
    lines.append(
        f"- facekp infer: {local_fixed:.1f} s of the wall time outside the loop (start-up, model load)."
    )
    lines += ["", "Machine load (`uptime`) before and after each run:", ""]
    lines += [f"    {load}" for load in loads]
    lines.append("")
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
