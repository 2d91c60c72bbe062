"""Fine-tuning from the shipped default model vs training from scratch, on real faces (issue 19).

For each subset of the real training faces (a number drawn with numpy's default_rng(0), or `all`),
two runs at the same budget (the team's CPU check: width 32, 12 epochs, every other setting at its
default; 64 px, or `--input-size 96`, the shipped default's input and `--preset finetune`'s): from
scratch, and from the shipped default (`--set train.init_from=default`).
Training picks its best epoch on its own 10 % of the subset; every run is scored with `facekp eval`
on test/ (never trained on, never used to pick an epoch). One JSON line per run goes to --results.

    .venv/bin/python benchmarks/real_split.py ../shared/realdata/facepoints /tmp/model-real --test 540
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune.py /tmp/model-real --subset 500 --subset all \\
        --input-size 96 --results docs/bench/finetune.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.real_ablation import train_and_eval
from facekp_cli.data.format import read_gt_csv, write_gt_csv
from facekp_cli.model.checkpoint import FACEKP_KEY, read_checkpoint_dict

# The team's CPU check; --input-size 96 matches the shipped default's network (its weights read
# 96 px faces: fine-tuned at 64 px on 500 faces it scored 5.75 %, worse than untouched).
CPU_CHECK = ["model.width=32", "train.epochs=12"]
STARTS = {"scratch": [], "default": ["train.init_from=default"]}


def subset_folder(train: Path, count: str, work: Path) -> Path:
    """`count` faces of train/ (hard links and their gt.csv rows), or train/ itself for `all`."""
    if count == "all":
        return train
    names, points = read_gt_csv(train / "gt.csv")
    chosen = np.sort(np.random.default_rng(0).choice(len(names), int(count), replace=False))
    folder = work / f"real{count}"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for i in chosen:
        target = folder / "images" / names[i]
        if not target.exists():
            os.link(train / "images" / names[i], target)
    write_gt_csv(folder / "gt.csv", [names[i] for i in chosen], points[chosen])
    return folder


def run(split: Path, data: Path, name: str, start: str, work: Path, size: int) -> dict:
    settings = [f"model.input_size={size}", *CPU_CHECK, *STARTS[start]]
    ckpt, measured = train_and_eval(data, split / "test", name, settings, work)
    faces = len(read_gt_csv(data / "gt.csv")[0])
    epoch = read_checkpoint_dict(ckpt)[FACEKP_KEY].get("epoch")
    return {
        "run": name,
        "start": start,
        "input_size": size,
        "train_faces": faces,
        "best_epoch": epoch,
        **measured,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("split", type=Path, help="train/ + test/ (real_split.py)")
    parser.add_argument("--subset", action="append", default=[], help="a number of faces, or all")
    parser.add_argument("--start", action="append", choices=sorted(STARTS), default=[])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/facekp-finetune"))
    parser.add_argument("--input-size", type=int, default=64, help="64: the CPU check; 96: the default's")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    for count in args.subset or ["500"]:
        data = subset_folder(args.split / "train", count, args.work)
        for start in args.start or ["scratch", "default"]:
            row = run(
                args.split, data, f"{start}-{count}-{args.input_size}px", start, args.work, args.input_size
            )
            print(json.dumps(row), flush=True)
            with args.results.open("a") as out:
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
