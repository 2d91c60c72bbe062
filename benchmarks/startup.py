"""Start-up time of `facekp --help`, a verb's `--help` and a bash completion request.

Each command runs RUNS times in a fresh process (after one warm-up run that fills the OS file
cache); the median wall time is reported and written, with the command, to docs/bench/startup.md.
Targets: `facekp --help` median under 0.3 s (issue 2); `facekp infer photo.jpg --detect` on the
shipped default model, points printed, under 2 s (issue 19; a whole photo, the YuNet finder).

    .venv/bin/python benchmarks/startup.py [--runs 9] [--out docs/bench/startup.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 0.3
INFER_TARGET_S = 2.0


def sample_photo() -> Path:
    """matplotlib's grace_hopper.jpg (in the lock): a whole 512x600 portrait, the README's example."""
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def facekp_executable() -> str:
    local = Path(sys.executable).with_name("facekp")
    return str(local) if local.exists() else (shutil.which("facekp") or "facekp")


def cases(exe: str) -> list[tuple[str, list[str], dict[str, str]]]:
    complete = {"_FACEKP_COMPLETE": "complete_bash", "COMP_WORDS": "facekp tr", "COMP_CWORD": "1"}
    photo = sample_photo()
    return [
        ("python -c pass (floor)", [sys.executable, "-c", "pass"], {}),
        ("facekp --help", [exe, "--help"], {}),
        ("facekp train --help", [exe, "train", "--help"], {}),
        ("bash completion of `facekp tr`", [exe], complete),
        # run from an empty folder (no best.ckpt there), points to stdout: the shipped default answers
        ("facekp infer photo.jpg --detect (shipped default)", [exe, "infer", str(photo), "--detect"], {}),
    ]


def time_command(argv: list[str], extra_env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) seconds per run; CPU time varies less on a busy machine."""
    env = {k: v for k, v in {**os.environ, **extra_env}.items() if not k.startswith("FACEKP_")}
    with tempfile.TemporaryDirectory(prefix="facekp-startup-") as cwd:  # no conf.toml, no best.ckpt
        subprocess.run(argv, env=env, capture_output=True, check=False, cwd=cwd)  # warm-up
        walls, cpus = [], []
        for _ in range(runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.run(argv, env=env, capture_output=True, check=False, cwd=cwd)
            walls.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if proc.returncode != 0:
                error = proc.stderr.decode()[-500:]
                raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {error}")
    return walls, cpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "startup.md")
    args = parser.parse_args()
    exe = facekp_executable()
    rows = []
    for label, argv, env in cases(exe):
        walls, cpus = time_command(argv, env, args.runs)
        rows.append((label, statistics.median(walls), min(walls), max(walls), statistics.median(cpus)))
        print(
            f"{label:34s} median {statistics.median(walls) * 1e3:4.0f} ms wall, "
            f"{statistics.median(cpus) * 1e3:4.0f} ms CPU",
            flush=True,
        )

    help_median, infer_median = rows[1][1], rows[-1][1]
    verdict = "meets" if help_median < TARGET_S else "MISSES"
    infer_verdict = "meets" if infer_median < INFER_TARGET_S else "MISSES"
    lines = [
        "# Start-up time",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} CPUs, Python {platform.python_version()}), {args.runs} runs each after one "
        "warm-up, wall time of a fresh process.",
        "",
        "Command: `.venv/bin/python benchmarks/startup.py` (also part of `make bench`).",
        "",
        "| command | median wall ms | min | max | median CPU ms |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {med * 1e3:.0f} | {lo * 1e3:.0f} | {hi * 1e3:.0f} | {cpu * 1e3:.0f} |"
            for name, med, lo, hi, cpu in rows
        ),
        "",
        f"Target: `facekp --help` median < {TARGET_S * 1000:.0f} ms — {verdict} it "
        f"({help_median * 1000:.0f} ms). The machine is shared, so single runs vary; the median counts.",
        f"Load average when it finished: {os.getloadavg()[0]:.1f}.",
        "",
        f"Target: `facekp infer photo.jpg --detect` with no model argument < {INFER_TARGET_S:.0f} s — "
        f"{infer_verdict} it ({infer_median:.2f} s): an empty folder, so facekp's shipped default answers, "
        "through its ONNX twin on the CPU (no torch import; docs/MODEL_CARD.md); the photo is "
        "matplotlib's grace_hopper.jpg, searched with YuNet, the points printed as JSON.",
        "",
        "What keeps it short: the CLI modules import only typer and the standard library (ruff TID253;",
        "tests/test_startup.py fails if torch, lightning, mlflow, dvc, albumentations, cv2 or onnxruntime",
        "load). Typer 0.29 coerces every parameter value through pydantic, whose import costs about",
        "100 ms; `facekp_cli/cli/main.py` defers that coercion during TAB completion and for the root",
        "options, which took `facekp train --help` from 303 ms and a completion request from 309 ms",
        "(medians of 7, same machine) to the figures above. `importlib.metadata.entry_points()`, which",
        "finds the verbs, costs about 35 ms of what remains.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0 if help_median < TARGET_S and infer_median < INFER_TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
