"""facekp against its peers on a labelled split: MediaPipe Face Mesh and dlib's 68-point predictor.

Each peer runs in its own virtual environment, created here on first use under .bench-venvs/
(gitignored; the peers are not facekp dependencies) from PyPI:
  - mediapipe==0.10.21 (the last release that bundles its face models and `mp.solutions`);
    Face Mesh with its own face detector and refined iris points, 478 points mapped to facekp's 14;
  - dlib-bin + face-recognition-models: "dlib" boxes the face with dlib's HOG detector, and with
    the whole crop when it finds none (counted); "dlib-crop" always takes the whole crop as the box
    (no detector, as for face crops); the 68 iBUG points mapped to 14 as docs/DESIGN.md says.
Every system, facekp included (predict_images, as `facekp infer` runs it, with --model/--ckpt),
runs as a subprocess (benchmarks/peer_runners/) pinned to one CPU core with one thread. Its
predictions are written in facekp's gt.csv format (empty cells where a peer found no face) and
scored by facekp's own metrics (facekp_cli/metrics.py) against the split's labels. Speed is end to
end after loading: decoding, face detection (peers) and the model, as images per CPU-second of
that process (a per-core rate that holds on a shared machine) and as wall-clock images/s.

The split: any folder with images/ + gt.csv (--split), by default the validation split that
`facekp train` holds out of the real faces (../shared/realdata/facepoints; data.val_fraction 0.1,
train.seed 0), so a model trained on that folder is scored on faces it never saw.

Peers follow other label conventions (where a brow ends, which point is the nose tip), which
inflates their errors here; they are still what a user would otherwise pick.

Usage: .venv/bin/python benchmarks/peers.py --model model.onnx [--ckpt best.ckpt] [--split DIR]
           [--label NAME] [--peers mediapipe,dlib,dlib-crop] [--limit N] [--core 0] [--no-write]
Writes docs/bench/peers.md and the peers section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RUNNERS = Path(__file__).resolve().parent / "peer_runners"
VENVS = ROOT / ".bench-venvs"
WORK = ROOT / ".bench-venvs" / "work"
REAL = ROOT.parent / "shared" / "realdata" / "facepoints"
PAGE = ROOT / "docs" / "bench" / "peers.md"
BENCHMARKS = ROOT / "docs" / "BENCHMARKS.md"
SECTION_START, SECTION_END = "<!-- peers:start -->", "<!-- peers:end -->"

PEER_REQUIREMENTS = {
    "mediapipe": ["mediapipe==0.10.21"],
    "dlib": ["dlib-bin", "face-recognition-models", "numpy", "pillow"],
}
# A peer run: (venv, runner, extra environment). dlib-crop skips the detector (face crops only).
PEERS = {
    "mediapipe": ("mediapipe", "run_mediapipe.py", {}),
    "dlib": ("dlib", "run_dlib.py", {}),
    "dlib-crop": ("dlib", "run_dlib.py", {"DLIB_BOX": "crop"}),
}

# MediaPipe Face Mesh indices averaged into each of facekp's 14 points. MediaPipe names points from
# the subject's view; facekp's left is the image's left, i.e. the subject's right for a face that
# looks at the camera. Brow ends: the mean of the brow's upper and lower outline ends; pupils: the
# refined iris centres (468 the subject's right iris, 473 the left); mouth centre: the mean of the
# inner lip midpoints (13 upper, 14 lower), as iBUG's 62 and 66.
MEDIAPIPE_INDICES: tuple[tuple[int, ...], ...] = (
    (70, 46),  # left_eyebrow_outer
    (107, 55),  # left_eyebrow_inner
    (336, 285),  # right_eyebrow_inner
    (300, 276),  # right_eyebrow_outer
    (33,),  # left_eye_outer
    (468,),  # left_pupil
    (133,),  # left_eye_inner
    (362,),  # right_eye_inner
    (473,),  # right_pupil
    (263,),  # right_eye_outer
    (1,),  # nose_tip
    (61,),  # mouth_left
    (13, 14),  # mouth_center
    (291,),  # mouth_right
)


MAPPINGS = """Mappings to facekp's 14 points (benchmarks/peers.py): dlib's iBUG 68 per docs/DESIGN.md (brow
ends 17/21/22/26, eye corners 36/39/42/45, pupils the means of 36-41 and 42-47, nose tip 30, mouth
corners 48/54, mouth centre the mean of 62 and 66; dlib's integer pixel indices + 0.5 for facekp's
corner origin); MediaPipe: brow ends the means of the upper and lower brow outline ends (70/46,
107/55, 336/285, 300/276), eye corners 33/133/362/263, pupils the refined iris centres 468/473,
nose tip 1, mouth corners 61/291, mouth centre the mean of 13 and 14. The refined iris points and
the brow outline means are why MediaPipe scores better here than in ../shared/ANCHORS.md (NME 5.35 %
on the held-out 600 with a plainer mapping)."""


@dataclass
class SystemResult:
    name: str
    description: str
    pred: np.ndarray  # (N, 14, 2) pixels, NaN where no face was found
    seconds: float  # wall time of the loop, pinned to one core
    cpu_seconds: float  # CPU time of the loop: per core, whatever else shares the machine
    not_found: int = 0
    fallback: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return len(self.pred) / self.seconds if self.seconds > 0 else float("nan")

    @property
    def images_per_cpu_s(self) -> float:
        return len(self.pred) / self.cpu_seconds if self.cpu_seconds > 0 else float("nan")


# ---------------------------------------------------------------- the split


def read_labels(gt_csv: Path) -> tuple[list[str], np.ndarray]:
    """gt.csv -> (filenames, (N, 14, 2)); empty cells NaN. Tolerant by design: points outside the
    frame are labels too (docs/DESIGN.md), whatever the installed facekp reader says about them."""
    with open(gt_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    names, points = [], []
    for row in rows[1:]:
        if not row:
            continue
        names.append(row[0])
        values = [float(cell) if cell.strip() else math.nan for cell in row[1:29]]
        points.append(np.array(values, np.float64).reshape(14, 2))
    return names, np.stack(points)


def write_predictions(path: Path, names: list[str], pred: np.ndarray) -> None:
    from facekp_cli.keypoints import NAMES

    header = ["filename"] + [f"{axis}{i + 1}" for i in range(len(NAMES)) for axis in "xy"]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for name, points in zip(names, pred, strict=True):
            cells = ["" if not np.isfinite(v) else f"{v:.3f}" for v in points.reshape(-1)]
            writer.writerow([name, *cells])
    tmp.replace(path)


def default_split(limit: int | None) -> tuple[Path, str, np.ndarray | None]:
    """The validation split facekp train holds out of the real faces, as a split folder of links."""
    from facekp_cli.settings import load_settings

    if not (REAL / "gt.csv").is_file():
        sys.exit(f"peers: {REAL} not found; pass --split DIR (a folder with images/ and gt.csv)")
    settings = load_settings(None, {})
    names, points = read_labels(REAL / "gt.csv")
    order = np.random.default_rng(settings.train.seed).permutation(len(names))  # as datamodule's split
    n_val = min(max(1, round(len(names) * settings.data.val_fraction)), len(names) - 1)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    if limit:
        val = val[:limit]
    split = WORK / "val"
    (split / "images").mkdir(parents=True, exist_ok=True)
    for index in val:
        link = split / "images" / names[index]
        if not link.exists():
            link.symlink_to(REAL / "images" / names[index])
    write_predictions(split / "gt.csv", [names[i] for i in val], points[val])
    what = (
        f"the validation split `facekp train` holds out of {REAL.relative_to(ROOT.parent)} "
        f"(data.val_fraction {settings.data.val_fraction}, train.seed {settings.train.seed}): "
        f"{len(val)} faces"
    )
    train_layout = _mean_layout(REAL / "images", [names[i] for i in train], points[train])
    return split, what, train_layout


def image_sizes(images: Path, names: list[str]) -> np.ndarray:
    from facekp_cli.data.images import displayed_size

    return np.array([displayed_size(images / name) for name in names], np.float64)


def _mean_layout(images: Path, names: list[str], points: np.ndarray) -> np.ndarray:
    from facekp_cli.metrics import mean_shape

    return mean_shape(points, image_sizes(images, names))


# ---------------------------------------------------------------- the systems


def ensure_venv(peer: str) -> Path:
    """.bench-venvs/<peer> with the peer's packages from PyPI; rebuilt when the list changes."""
    venv = VENVS / peer
    python = venv / "bin" / "python"
    stamp = venv / ".facekp-bench-ready"
    wanted = " ".join(PEER_REQUIREMENTS[peer])
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"peers: creating {venv} with {wanted} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_REQUIREMENTS[peer]], check=True)
    stamp.write_text(wanted)
    return python


def run_runner(python: Path, runner: str, tag: str, split: Path, names: list[str], core: int, extra_env):
    """Run one runner pinned to `core`; its raw output (points, found, fallback, timings)."""
    listing = WORK / f"{tag}-images.txt"
    listing.write_text("".join(f"{(split / 'images' / n).absolute()}\n" for n in names), encoding="utf-8")
    raw = WORK / f"{tag}-raw.npz"
    raw.unlink(missing_ok=True)
    command = [str(python), str(RUNNERS / runner), "--images", str(listing), "--out", str(raw)]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", **extra_env)
    proc = subprocess.run([*command, "--core", str(core)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"peers: {tag} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return np.load(raw)


def run_peer(peer: str, split: Path, names: list[str], core: int) -> SystemResult:
    from facekp_cli.data.importers import IBUG_INDICES

    venv, runner, extra_env = PEERS[peer]
    data = run_runner(ensure_venv(venv), runner, peer, split, names, core, extra_env)
    points = data["points"]
    if venv == "dlib":
        # dlib gives integer pixel indices; facekp's origin is the top-left corner of the top-left
        # pixel, so a pixel's centre is at index + 0.5.
        indices, points = IBUG_INDICES, points + 0.5
        description = "dlib 68-point ERT (dlib-bin, face-recognition-models), iBUG 68 -> 14, " + (
            "whole crop as the box" if extra_env else "HOG detector's box"
        )
    else:
        indices = MEDIAPIPE_INDICES
        description = "MediaPipe Face Mesh 0.10.21 (refined, 478 points -> 14)"
    pred = np.stack([points[:, list(idx)].mean(axis=1) for idx in indices], axis=1)
    result = SystemResult(peer, description, pred, float(data["seconds"]), float(data["cpu_seconds"]))
    result.not_found = int((~data["found"]).sum())
    result.fallback = int(data["fallback"].sum())
    if peer == "dlib":
        result.notes.append(
            f"HOG detector found no face in {result.fallback} of {len(names)} images: "
            "the whole crop was the box"
        )
    return result


def run_facekp(model: Path, label: str, split: Path, names: list[str], core: int) -> SystemResult:
    """facekp's predict_images (what `facekp infer` runs) in this environment, pinned to one core."""
    tag = f"facekp-{model.stem}"
    env = {"FACEKP_BENCH_MODEL": str(model.absolute())}
    data = run_runner(Path(sys.executable), "run_facekp.py", tag, split, names, core, env)
    return SystemResult(tag, label, data["points"], float(data["seconds"]), float(data["cpu_seconds"]))


# ---------------------------------------------------------------- report


def score(result: SystemResult, gt: np.ndarray, sizes: np.ndarray):
    from facekp_cli.metrics import summarise

    scored = np.isfinite(result.pred).all(axis=(1, 2))
    return summarise(result.pred[scored], gt[scored], sizes[scored])


def render(results, summaries, baseline, split_what, command, seconds) -> tuple[str, str]:
    from facekp_cli.keypoints import NAMES

    rows = [
        "| system | MSE100 | NME % | FR@0.10 % | faces not found | images per CPU-second (one core) "
        "| images/s pinned to one shared core |",
        "|---|---|---|---|---|---|---|",
        f"| mean shape (training split's mean layout) | {baseline.mse100:.2f} | {baseline.nme:.2f} | "
        f"{baseline.fr10:.1f} | - | - | - |",
    ]
    for result, summary in zip(results, summaries, strict=True):
        rows.append(
            f"| {result.description} | {summary.mse100:.2f} | {summary.nme:.2f} | {summary.fr10:.1f} | "
            f"{result.not_found} | {result.images_per_cpu_s:.1f} | {result.images_per_s:.1f} |"
        )
    per_point = ["| point | " + " | ".join(r.name for r in results) + " |", "|---" * (len(results) + 1) + "|"]
    for name in NAMES:
        cells = " | ".join(f"{s.per_point_nme[name]:.2f}" for s in summaries)
        per_point.append(f"| {name} | {cells} |")
    notes = [f"- {r.name}: {note}" for r in results for note in r.notes]
    machine = f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}"
    load = os.getloadavg()[0]
    table = "\n".join(rows)
    caveat = (
        "Peers follow other label conventions (where a brow ends, which point is the nose tip, the "
        "pupil as the iris centre or the eye-contour mean), which inflates their errors here; they are "
        "still what a user would otherwise pick. Faces a peer did not find are left out of its scores "
        "and counted; facekp predicts every image."
    )
    page = f"""# Peers: facekp, MediaPipe Face Mesh and dlib on real faces

Command: `{command}` ({seconds:.0f} s in all, peers' virtual environments already made).
Machine: {machine}; load average {load:.1f} at the end (shared cores: rates are noisy).
Split: {split_what}.

{table}

Metrics as docs/DESIGN.md defines them, computed by facekp_cli/metrics.py on predictions written in gt.csv
format (empty cells where no face was found). Speed: every system runs as its own process pinned
to one core (`sched_setaffinity`, one thread), timed from the first image to the last after loading
and a warm-up: decoding, the peers' face detection and the model. Images per CPU-second is that
process's CPU time, so it stays a per-core rate when other work shares the core; the wall-clock
rate beside it is what the process got at this load.

{caveat}

{chr(10).join(notes)}

{MAPPINGS}

Per-point NME (% of the outer-eye-corner distance):

{chr(10).join(per_point)}
"""
    section = f"""{SECTION_START}
## Peers on real faces (benchmarks/peers.py)

`{command}`; {split_what}; one core each, end to end. Details and per-point errors: docs/bench/peers.md.

{table}

{caveat}
{SECTION_END}"""
    return page, section


def write_section(section: str) -> None:
    text = BENCHMARKS.read_text(encoding="utf-8")
    if SECTION_START in text:
        head, rest = text.split(SECTION_START, 1)
        text = head + section + rest.split(SECTION_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    BENCHMARKS.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, action="append", default=[], help="facekp .onnx/.pt model")
    parser.add_argument("--ckpt", type=Path, action="append", default=[], help="facekp checkpoint")
    parser.add_argument("--label", action="append", default=[], help="a name per model, in order")
    parser.add_argument("--split", type=Path, help="a split folder: images/ + gt.csv")
    parser.add_argument("--peers", default="mediapipe,dlib,dlib-crop", help="comma-separated; empty for none")
    parser.add_argument("--limit", type=int, help="only the first N images of the split")
    parser.add_argument("--core", type=int, default=0, help="the CPU core every system is pinned to")
    parser.add_argument("--no-write", action="store_true", help="print the tables, write no docs")
    args = parser.parse_args()
    started = time.perf_counter()
    WORK.mkdir(parents=True, exist_ok=True)

    if args.split:
        split, baseline_layout = args.split, None
        names, _ = read_labels(split / "gt.csv")
        split_what = f"{split} ({len(names)} faces)"
    else:
        split, split_what, baseline_layout = default_split(args.limit)
    names, gt = read_labels(split / "gt.csv")
    if args.split and args.limit:
        names, gt = names[: args.limit], gt[: args.limit]
    sizes = image_sizes(split / "images", names)

    results = []
    models = [*args.model, *args.ckpt]
    for index, model in enumerate(models):
        label = args.label[index] if index < len(args.label) else f"facekp ({model.name})"
        print(f"peers: facekp {model} on {len(names)} images", flush=True)
        results.append(run_facekp(model, label, split, names, args.core))
    for peer in [p for p in args.peers.split(",") if p]:
        if peer not in PEERS:
            sys.exit(f"peers: unknown peer '{peer}' (known: {', '.join(PEERS)})")
        print(f"peers: {peer} on {len(names)} images", flush=True)
        results.append(run_peer(peer, split, names, args.core))
    for result in results:
        write_predictions(WORK / f"pred-{result.name}.csv", names, result.pred)

    from facekp_cli.metrics import mean_shape, mean_shape_predictions, summarise

    layout = baseline_layout if baseline_layout is not None else mean_shape(gt, sizes)
    baseline = summarise(mean_shape_predictions(layout, sizes), gt, sizes)
    summaries = [score(r, gt, sizes) for r in results]
    command = "python benchmarks/peers.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    page, section = render(results, summaries, baseline, split_what, command, time.perf_counter() - started)
    print(page)
    report = {
        r.name: {
            "images_per_cpu_s": r.images_per_cpu_s,
            "description": r.description,
            "images_per_s": r.images_per_s,
            "not_found": r.not_found,
            "fallback": r.fallback,
            **s.to_dict(),
        }
        for r, s in zip(results, summaries, strict=True)
    }
    (WORK / "results.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    if not args.no_write:
        PAGE.write_text(page, encoding="utf-8")
        write_section(section)
        print(
            f"peers: wrote {PAGE.relative_to(ROOT)} and the peers section of {BENCHMARKS.relative_to(ROOT)}"
        )


if __name__ == "__main__":
    main()
