"""Ablations on real faces: train each variant through the real CLI, score it on a held-out split.

Each variant is a list of `--set key=value` overrides on top of a base recipe; every run is the
command a user would type (`facekp train`, then `facekp eval --json` on test/), and one JSON line
per variant is appended to --results (real-val MSE100, NME, FR@0.10, train seconds).

    .venv/bin/python benchmarks/real_split.py ../shared/realdata/facepoints /tmp/facekp-real
    .venv/bin/python benchmarks/real_ablation.py /tmp/facekp-real --base cpu \\
        --variant base= --variant heatmap=model.head=heatmap --results docs/bench/real_ablation.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FACEKP = str(Path(sys.executable).with_name("facekp"))
BASES = {
    # The team's fixed CPU check (issue 9): 64 px, width 32, 12 epochs on 2 cores.
    "cpu": ["model.input_size=64", "model.width=32", "train.epochs=12"],
    # The default recipe (conf.toml as shipped).
    "default": [],
}


def train_and_eval(data: Path, test: Path, name: str, overrides: list[str], work: Path) -> tuple[Path, dict]:
    """`facekp train` on data with the overrides, then `facekp eval --json` of its best checkpoint
    on test; returns the checkpoint and a row: the scores, train wall seconds and the machine."""
    ckpt = work / f"{name}.ckpt"
    sets = [arg for item in overrides for arg in ("--set", item)]
    common = ["--set", f"train.out_dir={work / 'runs'}", "--set", f"train.best_path={ckpt}"]
    load = round(os.getloadavg()[0], 1)  # at the start: train_s is wall time on shared cores
    started = time.perf_counter()
    subprocess.run(
        [FACEKP, *common, *sets, "train", "--data", str(data), "--no-tracking", "--run-name", name],
        check=True,
    )
    seconds = time.perf_counter() - started
    row = {**evaluate(ckpt, test, sets), "train_s": round(seconds, 1)}
    return ckpt, {**row, "cpus": os.cpu_count(), "load_avg": load, "code": code_version()}


def evaluate(ckpt: Path, test: Path, sets: list[str]) -> dict:
    report = subprocess.run(
        [FACEKP, *sets, "eval", "--ckpt", str(ckpt), "--data", str(test), "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    return scores(report.stdout)


def run_variant(data: Path, name: str, overrides: list[str], work: Path) -> dict:
    ckpt, measured = train_and_eval(data, data / "test", name, overrides, work)
    # Test-time flip averaging needs no retraining: the same weights, scored with it switched on.
    sets = [arg for item in overrides for arg in ("--set", item)]
    flipped = evaluate(with_flip_test(ckpt), data / "test", sets)
    return {"variant": name, "overrides": overrides, **measured, "with_flip_test": flipped}


def code_version() -> str | None:
    """The commit the row was measured with (a row says which code made it: issue 17)."""
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent, capture_output=True, text=True
    )
    return done.stdout.strip() or None


def scores(report_json: str) -> dict:
    report = json.loads(report_json)
    model, baseline = report["metrics"], report["baseline"]
    return {
        "mse100": round(model["mse100"], 3),
        "nme": round(model["nme"], 3),
        "fr10": round(model["fr10"] / 100, 5),  # results files keep fractions (rows from before eval used %)
        "mean_shape_mse100": round(baseline["mse100"], 3),
    }


def with_flip_test(ckpt: Path) -> Path:
    import torch

    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    checkpoint["facekp"]["flip_test"] = True
    out = ckpt.with_name(ckpt.stem + "-flip.ckpt")
    torch.save(checkpoint, out)
    return out


def render(results: Path) -> str:
    """The results file as the markdown table of docs/bench/real.md."""
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    base = set(BASES["cpu"])
    lines = [
        "| variant | changes from the base recipe | MSE100 | NME % | FR@0.10 % "
        "| + flip test: MSE100 | NME % | FR % | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        changes = ", ".join(o for o in row["overrides"] if o not in base) or "-"
        flip = row["with_flip_test"]
        lines.append(
            f"| {row['variant']} | {changes} | {row['mse100']:.2f} | {row['nme']:.2f} "
            f"| {100 * row['fr10']:.1f} "
            f"| {flip['mse100']:.2f} | {flip['nme']:.2f} | {100 * flip['fr10']:.1f} | {row['train_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", type=Path, help="train/ + test/ (real_split.py)")
    parser.add_argument("--base", choices=sorted(BASES), default="cpu")
    parser.add_argument("--variant", action="append", default=[], help="NAME=key=value,key=value")
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--render", action="store_true", help="print --results as a markdown table and exit")
    parser.add_argument("--work", type=Path, help="keep checkpoints here (default: a temporary folder)")
    args = parser.parse_args()
    if args.render:
        print(render(args.results))
        return
    with tempfile.TemporaryDirectory(prefix="facekp-ablation-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for spec in args.variant or ["base="]:
            name, _, rest = spec.partition("=")
            overrides = BASES[args.base] + [item for item in rest.split(",") if item]
            row = run_variant(args.data, name, overrides, work)
            print(json.dumps(row), flush=True)
            with args.results.open("a") as out:
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
