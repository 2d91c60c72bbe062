"""The embedded default dataset: procedural face crops with exact sub-pixel labels.

`synthesize` writes the normative format (docs/DESIGN.md). Image i depends only on (seed, i), the shape
model and GENERATOR_VERSION, so the result is the same whatever the number of worker processes. Face
shapes and their placement in the crop come from a point distribution model (synth_shape.py; the
embedded one is fitted on real faces), the curves around the labels from synth_face.py, the drawing
from synth_draw.py and synth_effects.py.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from facekp_cli.atomic import raise_if_full_disk, remove_stale_temporaries, temp_prefix
from facekp_cli.data.format import GT_FILE, IMAGES_DIR, SPLITS, write_gt_csv
from facekp_cli.data.synth.shape import ShapeModel, default_shape_model
from facekp_cli.errors import DataError, UsageError

GENERATOR_VERSION = "5"
META_FILE = "synth.json"
MIN_SIDE, MAX_SIDE = 64, 320
_IN_PROCESS_BELOW = 200  # tiny sets are faster without starting worker processes


@dataclass(frozen=True)
class SynthResult:
    out_dir: Path
    train_count: int
    test_count: int
    seconds: float
    shape_model: str = ""  # digest of the shape model used


@dataclass(frozen=True)
class SynthImage:
    image: np.ndarray  # (H, W, 3) uint8, BGR (OpenCV order)
    keypoints: np.ndarray  # (14, 2) float64 pixels
    extension: str  # ".jpg" or ".png"
    jpeg_quality: int


def image_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(GENERATOR_VERSION), seed, index])


def _crop_size(rng, model: ShapeModel) -> tuple[int, int]:
    side = math.exp(model.sample(rng, "log_side"))
    aspect = math.exp(model.sample(rng, "log_aspect"))  # height / width
    width = round(side / math.sqrt(aspect))
    height = round(side * math.sqrt(aspect))
    return int(np.clip(width, MIN_SIDE, MAX_SIDE)), int(np.clip(height, MIN_SIDE, MAX_SIDE))


def sample_geometry(rng, model: ShapeModel, width: int, height: int):
    """A face shape from the model, placed like the fitted set places faces: (face, pose, labels in pixels).

    Roll, scale (crop tightness) and position are drawn from the fitted distributions; a placement that
    puts a label outside the crop is drawn again (the embedded set keeps every point in frame), and
    after a few tries the face shrinks until it fits.
    """
    from facekp_cli.data.synth.face import FacePose, build_face, face_frame

    shape = model.sample_shape(rng)
    centre, half_width, yaw = face_frame(shape)
    face = build_face(rng, (shape - centre) / half_width, yaw)
    roll = math.radians(model.sample(rng, "roll_deg"))
    size = math.sqrt(width * height)
    scale = math.exp(model.sample(rng, "log_scale")) * size
    rotation = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    margin = 1.0
    for attempt in range(40):
        shrink = 0.92 ** (attempt // 4)
        centroid = np.array([model.sample(rng, "centre_x") * width, model.sample(rng, "centre_y") * height])
        origin = rotation @ centre * scale * shrink + centroid
        pose = FacePose(0.0, 0.0, roll, half_width * scale * shrink, float(origin[0]), float(origin[1]))
        points = pose.project(face.labels)
        if (
            points.min() >= margin
            and points[:, 0].max() <= width - margin
            and points[:, 1].max() <= height - margin
        ):
            break
    else:  # a small centred face always fits
        scale = 0.25 * min(width, height) / max(float(np.abs(face.labels[:, :2]).max()), 1e-6)
        pose = FacePose(0.0, 0.0, roll, scale, width / 2, height / 2)
        points = pose.project(face.labels)
    return face, pose, points


def render_image(seed: int, index: int, model: ShapeModel | None = None) -> SynthImage:
    """One face crop and its 14 labels, a pure function of (seed, index, shape model)."""
    import cv2

    from facekp_cli.data.synth.drawing import draw_background, draw_face
    from facekp_cli.data.synth.effects import draw_glasses, draw_occluder, light_and_camera

    model = model or default_shape_model()
    rng = image_rng(seed, index)
    width, height = _crop_size(rng, model)
    face, pose, keypoints = sample_geometry(rng, model, width, height)
    img = draw_background(cv2, rng, width, height)
    colors = draw_face(cv2, rng, img, face, pose)
    if rng.random() < 0.2:
        draw_glasses(cv2, rng, img, face, pose, colors["px"])
    for _ in range(rng.choice([0, 1, 2], p=[0.75, 0.2, 0.05])):
        draw_occluder(cv2, rng, img, keypoints, colors["skin"])
    img = light_and_camera(cv2, rng, img)
    extension = ".png" if rng.random() < 0.1 else ".jpg"
    return SynthImage(img, keypoints, extension, int(rng.integers(35, 96)))


def _filename(index: int, extension: str) -> str:
    return f"{index:06d}{extension}"


def _write_chunk(
    args: tuple[int, list[tuple[int, str]], str, ShapeModel],
) -> list[tuple[int, str, np.ndarray]]:
    """Render and write a chunk of images; returns (index, filename, keypoints) per image."""
    import cv2

    cv2.setNumThreads(1)
    seed, jobs, root, model = args
    rows = []
    for index, split in jobs:
        sample = render_image(seed, index, model)
        name = _filename(index, sample.extension)
        path = os.path.join(root, split, IMAGES_DIR, name)
        params = [cv2.IMWRITE_JPEG_QUALITY, sample.jpeg_quality] if sample.extension == ".jpg" else []
        encoded, data = cv2.imencode(sample.extension, sample.image, params)
        if not encoded:
            raise DataError(f"{path}: cannot encode image")
        with open(path, "wb") as fh:  # Python's write raises on a full disk; cv2.imwrite may not
            fh.write(data.tobytes())
        rows.append((index, name, sample.keypoints))
    return rows


def split_counts(n: int, test_fraction: float) -> tuple[int, int]:
    test = round(n * test_fraction)
    if n >= 2 and test_fraction > 0:
        test = min(max(test, 1), n - 1)
    return n - test, test


def synthesize(
    out_dir: Path,
    n: int,
    seed: int = 0,
    test_fraction: float = 0.1,
    workers: int | None = None,
    resume: bool = False,
    shape_model: ShapeModel | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SynthResult:
    """Write n synthetic face crops to out_dir/{train,test}; the last test share of indices is the test split.

    The set is built in a temporary folder beside out_dir (`.NAME.<pid>.XXXX.tmp`) and moved into
    place at the end, so an interrupted run never leaves a half-written dataset. Each finished
    chunk of images is recorded in the folder's progress journal; `resume` continues the temporary
    folder a killed run (same seed, n, split and shape model) left behind instead of starting over,
    and without it such leftovers are removed. An existing out_dir is replaced only if it is
    empty or a previous synth output (`_check_replaceable`), never a real or imported dataset.
    `shape_model` (default: the embedded one, fitted on real faces) gives the faces' geometry and
    placement. `on_progress(done, n)` hears of each finished chunk of images.
    """
    out_dir = Path(out_dir)
    if n < 1:
        raise UsageError(f"--n must be at least 1 (got {n})")
    if not 0.0 <= test_fraction < 1.0:
        raise UsageError(f"--test-fraction must be in [0, 1) (got {test_fraction})")
    if out_dir.exists():
        _check_replaceable(out_dir)
    started = time.perf_counter()
    model = shape_model or default_shape_model()
    train_count, test_count = split_counts(n, test_fraction)
    params = {
        "version": GENERATOR_VERSION,
        "seed": seed,
        "n": n,
        "test_fraction": test_fraction,
        "shape_model": model.digest(),
    }
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp, done = _resumable_folder(out_dir, params) if resume else (None, {})
        remove_stale_temporaries(out_dir)  # what a killed run left and this one does not continue
        if tmp is None:
            tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out_dir), suffix=".tmp", dir=out_dir.parent))
    except OSError as exc:
        raise_if_full_disk(exc, out_dir)
        raise
    try:
        for split in SPLITS:
            (tmp / split / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        jobs = [(i, "train" if i < train_count else "test") for i in range(n)]
        with open(tmp / PROGRESS_FILE, "a", encoding="utf-8") as journal:
            if not done:
                journal.truncate(0)
                _journal(journal, [json.dumps(params)])
            todo = [job for job in jobs if job[0] not in done]
            rows = list(done.values()) + _run_jobs(
                seed, todo, tmp, workers, model, journal, _counter(on_progress, len(done), n)
            )
        (tmp / PROGRESS_FILE).unlink()
        by_split: dict[str, list] = {split: [] for split in SPLITS}
        split_of = dict(jobs)
        for index, name, keypoints in rows:
            by_split[split_of[index]].append((name, keypoints))
        for split, items in by_split.items():
            names = [name for name, _ in items]
            points = np.array([kp for _, kp in items]).reshape(len(items), 14, 2)
            write_gt_csv(tmp / split / GT_FILE, names, points)
        meta = {
            "generator": "facekp-synth",
            "version": GENERATOR_VERSION,
            "seed": seed,
            "n": n,
            "test_fraction": test_fraction,
            "train": train_count,
            "test": test_count,
            "shape_model": {"digest": model.digest(), "source": model.source},
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)  # only a kill -9 leaves it, for --resume
        raise_if_full_disk(exc, out_dir)
        raise
    return SynthResult(out_dir, train_count, test_count, time.perf_counter() - started, model.digest())


_OWN_IMAGE = re.compile(r"^\d{6}\.(jpg|png)$")  # _filename


def _check_replaceable(path: Path) -> None:
    """Refuse to replace a folder facekp synth did not write: only an empty folder, or one whose
    synth.json says `facekp-synth` and which holds nothing but what synth writes, may go."""
    if not path.is_dir():
        raise DataError(f"{path}: exists and is not a folder; refusing to overwrite it")
    entries = {p.name for p in path.iterdir()}
    if not entries:
        return
    refuse = f"{path}: exists and is not a dataset made by `facekp data synth`"
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("generator") != "facekp-synth":
        raise DataError(f"{refuse} (no {META_FILE}); refusing to overwrite it, choose an empty or new --out")
    foreign = sorted(entries - {*SPLITS, META_FILE})
    for split in sorted(entries & set(SPLITS)):
        folder = path / split
        if not folder.is_dir():
            foreign.append(split)
            continue
        for entry in folder.iterdir():
            if entry.name == GT_FILE and entry.is_file():
                continue
            if entry.name == IMAGES_DIR and entry.is_dir():
                foreign += [
                    f"{split}/{IMAGES_DIR}/{p.name}" for p in entry.iterdir() if not _OWN_IMAGE.match(p.name)
                ]
                continue
            foreign.append(f"{split}/{entry.name}")
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise DataError(
            f"{refuse} alone: it also holds {', '.join(foreign[:3])}{more}; refusing to overwrite it"
        )


def _counter(on_progress: Callable[[int, int], None] | None, done: int, n: int) -> Callable[[int], None]:
    """on_progress(done, n) from a count of newly finished images."""
    count = [done]
    if on_progress is not None:
        on_progress(done, n)

    def finished(images: int) -> None:
        count[0] += images
        if on_progress is not None:
            on_progress(count[0], n)

    return finished


def _run_jobs(
    seed: int,
    jobs: list[tuple[int, str]],
    root: Path,
    workers: int | None,
    model: ShapeModel,
    journal,
    finished: Callable[[int], None],
):
    """Write the images; each finished chunk's labels go to the progress journal at once."""
    workers = workers or os.cpu_count() or 1
    in_process = workers <= 1 or len(jobs) < _IN_PROCESS_BELOW
    chunk = 16 if in_process else max(16, min(256, math.ceil(len(jobs) / (workers * 8))))
    chunks = [(seed, jobs[i : i + chunk], str(root), model) for i in range(0, len(jobs), chunk)]
    out: list[tuple[int, str, np.ndarray]] = []
    if in_process:
        for rows in map(_write_chunk, chunks):
            _journal_rows(journal, rows)
            out.extend(rows)
            finished(len(rows))
        return out
    # spawn, not fork: the caller may hold torch/OpenMP threads, which a forked child can deadlock on.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        for rows in pool.map(_write_chunk, chunks):
            _journal_rows(journal, rows)
            out.extend(rows)
            finished(len(rows))
    return out


PROGRESS_FILE = "progress.jsonl"  # inside the temporary folder: params, then one line per image


def _journal(journal, lines: list[str]) -> None:
    journal.write("".join(line + "\n" for line in lines))
    journal.flush()
    os.fsync(journal.fileno())


def _journal_rows(journal, rows) -> None:
    _journal(
        journal, [json.dumps({"i": i, "name": name, "kp": np.asarray(kp).tolist()}) for i, name, kp in rows]
    )


def _resumable_folder(out_dir: Path, params: dict) -> tuple[Path | None, dict[int, tuple]]:
    """The newest temporary folder a dead run left for out_dir with the same params, taken over
    (renamed to this process), and its finished images; (None, {}) when there is none."""
    from facekp_cli.atomic import stale_temporaries

    train_count = split_counts(params["n"], params["test_fraction"])[0]
    for folder in sorted(stale_temporaries(out_dir), key=lambda p: p.stat().st_mtime, reverse=True):
        progress = folder / PROGRESS_FILE
        if not folder.is_dir() or not progress.is_file():
            continue
        text = progress.read_text(encoding="utf-8", errors="replace")
        lines = text[: text.rfind("\n") + 1].splitlines()  # a torn last line is not a finished image
        try:
            if not lines or json.loads(lines[0]) != params:
                continue
            records = [json.loads(line) for line in lines[1:]]
        except json.JSONDecodeError:
            continue
        done = {}
        for record in records:
            split = "train" if record["i"] < train_count else "test"
            if (folder / split / IMAGES_DIR / record["name"]).is_file():
                done[record["i"]] = (record["i"], record["name"], np.asarray(record["kp"], np.float64))
        mine = Path(tempfile.mkdtemp(prefix=temp_prefix(out_dir), suffix=".tmp", dir=out_dir.parent))
        os.replace(folder, mine)  # ours now: a neighbour's clean-up must not take it for stale
        return mine, done
    return None, {}
