"""Load: `facekp infer` over 20,000 files of which 1% are corrupt.

Checks that the run finishes, exits 4 (PARTIAL), reports exactly the corrupt files (the JSON's
error entries against the known set, nothing missing, nothing extra), and that peak memory is
flat: max RSS for 20,000 files within 1.2x of that for 2,000.

Files: 200 distinct synthetic face crops (`synthesize`, JPEG) hard-linked to the wanted number of
names, and 1% corrupt files at seeded random positions, in four kinds taken in turn: a truncated
JPEG, random bytes, an empty file, and text, all named .jpg. Model: the default-sized network
(input 96, width 64, random weights) exported to ONNX as `facekp export` does. Peak RSS is
/usr/bin/time -v's "Maximum resident set size" of the `facekp` process.

Usage: .venv/bin/python benchmarks/infer_load.py [--big 20000] [--small 2000]
       [--out docs/bench/reliability.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CORRUPT_KINDS = ("truncated JPEG", "random bytes", "empty file", "text named .jpg")
PARTIAL = 4


def make_corpus(folder: Path, total: int, corrupt: int, distinct: list[Path], seed: int = 0) -> set[str]:
    """`total` files named 000000.jpg... in `folder`, `corrupt` of them broken; returns their paths."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    broken = set(rng.choice(total, size=corrupt, replace=False).tolist())
    source = distinct[0].read_bytes()
    bad: set[str] = set()
    for i in range(total):
        path = folder / f"{i:06d}.jpg"
        if i not in broken:
            os.link(distinct[i % len(distinct)], path)
            continue
        kind = CORRUPT_KINDS[len(bad) % len(CORRUPT_KINDS)]
        if kind == "truncated JPEG":
            path.write_bytes(source[: len(source) // 2])
        elif kind == "random bytes":
            path.write_bytes(rng.bytes(2048))
        elif kind == "empty file":
            path.write_bytes(b"")
        else:
            path.write_text("this is a note, not a picture\n")
        bad.add(str(path))
    return bad


def distinct_jpegs(folder: Path, count: int) -> list[Path]:
    from PIL import Image

    from facekp_cli.data.synth.generator import synthesize

    synthesize(folder / "faces_data", count, seed=0, test_fraction=0.1, workers=1)
    out = folder / "distinct"
    out.mkdir()
    for split in ("train", "test"):
        for path in sorted((folder / "faces_data" / split / "images").iterdir()):
            Image.open(path).convert("RGB").save(out / f"{split}_{path.stem}.jpg", quality=90)
    shutil.rmtree(folder / "faces_data")
    return sorted(out.iterdir())


def make_onnx(folder: Path) -> Path:
    import torch

    from facekp_cli import __version__
    from facekp_cli.frame import Preprocessing
    from facekp_cli.model.checkpoint import ModelMeta, build_network, load_checkpoint
    from facekp_cli.model.export import export_onnx
    from facekp_cli.model.metadata import meta_to_props

    torch.manual_seed(0)
    meta = ModelMeta(Preprocessing.for_channels(96, 3), width=64, facekp_version=__version__)
    ckpt = folder / "load.ckpt"
    state = {f"model.{k}": v for k, v in build_network(meta).state_dict().items()}
    torch.save({"state_dict": state, "facekp": meta.to_dict()}, ckpt)
    onnx_path = folder / "load.onnx"
    export_onnx(load_checkpoint(ckpt), onnx_path, 17, meta_to_props(meta))
    return onnx_path


def run_infer(images: Path, model: Path, out: Path) -> dict:
    cmd = [
        str(BIN / "facekp"),
        "-q",
        "infer",
        str(images),
        "--no-detect",
        "--model",
        str(model),
        "--out",
        str(out),
    ]
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    skipped = [line for line in done.stderr.splitlines() if line.startswith("facekp: skipped ")]
    return {"code": done.returncode, "wall": wall, "rss_mb": rss_kb / 1024, "skipped_lines": len(skipped),
            "stderr_tail": done.stderr[-600:], "command": " ".join(cmd)}  # fmt: skip


def check(result: dict, out: Path, total: int, bad: set[str]) -> dict:
    payload = json.loads(out.read_text())
    errors = {e["path"] for e in payload["images"] if "error" in e}
    good = [e for e in payload["images"] if "error" not in e]
    return {
        "entries": len(payload["images"]),
        "reported": len(errors),
        "missed": len(bad - errors),
        "extra": len(errors - bad),
        "good_with_points": sum(1 for e in good if len(e["points"]) == 14),
        "summary": payload["summary"],
        "ok": result["code"] == PARTIAL and errors == bad and len(payload["images"]) == total
        and len(good) == total - len(bad) and payload["summary"]["failed"] == len(bad)
        and result["skipped_lines"] == len(bad),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=20000)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "reliability.md")
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="facekp-load-") as tmp:
        work = Path(tmp)
        distinct = distinct_jpegs(work, 200)
        model = make_onnx(work)
        for total in (args.small, args.big):
            folder = work / f"images_{total}"
            bad = make_corpus(folder, total, total // 100, distinct, seed=total)
            out = work / f"preds_{total}.json"
            result = run_infer(folder, model, out)
            verdict = check(result, out, total, bad)
            rows.append((total, len(bad), result, verdict))
            print(f"{total} files, {len(bad)} corrupt: exit {result['code']}, {verdict}, "
                  f"{result['rss_mb']:.0f} MB, {result['wall']:.1f} s", flush=True)  # fmt: skip
    ratio = rows[1][2]["rss_mb"] / rows[0][2]["rss_mb"]
    all_ok = all(v["ok"] for *_, v in rows) and ratio <= 1.2
    table = "\n".join(
        f"| {total} | {n_bad} | {r['code']} | {v['reported']} | {v['missed']} | {v['extra']} | "
        f"{v['good_with_points']} | {r['rss_mb']:.0f} MB | {r['wall']:.1f} s | {total / r['wall']:.0f} |"
        for total, n_bad, r, v in rows
    )
    text = f"""# Reliability under load: `facekp infer` over 20,000 files, 1% corrupt

Command: `.venv/bin/python benchmarks/infer_load.py` (from the repository root);
{time.perf_counter() - started:.0f} s in all.
Machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; load average
{load_before:.1f} before and {os.getloadavg()[0]:.1f} after (the cores are shared with other work).

Files: 200 distinct synthetic face crops (`synthesize`, JPEG) hard-linked to the wanted number of names,
plus 1% corrupt files at seeded random positions, in turn a truncated JPEG, random bytes, an empty file
and a text file, all named `.jpg`. Model: ResNet18 input 96, width 64, random weights, as ONNX
(`export_onnx`, what `facekp export` writes). Each run is one fresh process:
`/usr/bin/time -v facekp -q infer DIR --model load.onnx --out preds.json`.

| files | corrupt | exit | reported | missed | extra | others with 14 points | peak RSS | wall | files/s |
|---|---|---|---|---|---|---|---|---|---|
{table}

"reported" counts the JSON entries with an `error`, compared path by path with the files that were
made corrupt ("missed": corrupt but not reported; "extra": reported but not corrupt). Every corrupt file
is also named on stderr (`facekp: skipped ...`), once. Exit code 4 is PARTIAL: the run finished, some
inputs failed, and they are listed in the output.

Peak RSS, {args.big} files / {args.small} files: {ratio:.2f}x (target <= 1.2x):
{"ok" if ratio <= 1.2 else "MISSED"}.
Decoding runs in a bounded window of batches and results are streamed to the output file, so memory
does not grow with the number of files.

All checks: {"met" if all_ok else "NOT MET"}.
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
