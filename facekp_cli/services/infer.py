"""`facekp infer`: named keypoints for image files, folders or glob patterns."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from facekp_cli import __version__
from facekp_cli.atomic import atomic_path
from facekp_cli.errors import UsageError
from facekp_cli.predict.backends import Predictor, open_predictor
from facekp_cli.predict.output import CsvPredictionsWriter, JsonPredictionsWriter
from facekp_cli.predict.sources import ImageSource, find_images
from facekp_cli.predict.stream import ImagePrediction, predict_images
from facekp_cli.settings import Settings

FORMATS = ("json", "csv")


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
    faces: int | None  # detect mode: faces found in all images
    seconds: float
    model: dict[str, Any] = field(default_factory=dict)
    draw_dir: Path | None = None

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def partial(self) -> bool:
        return bool(self.failed)


def output_format(settings: Settings, out: Path, explicit: str | None = None) -> str:
    """--format, else the output's extension, else infer.format from the settings."""
    if explicit is not None:
        fmt = explicit
    elif settings.sources.get("infer.format", "default") == "default" and out.suffix.lower() in (
        ".json",
        ".csv",
    ):
        fmt = out.suffix.lower()[1:]
    else:
        fmt = settings.infer.format
    if fmt not in FORMATS:
        raise UsageError(f"unknown output format '{fmt}' (use json or csv)")
    return fmt


def resolve_model(
    settings: Settings, ckpt: Path | None, model: Path | None
) -> tuple[Path | None, Path | None]:
    """Default to the stable best checkpoint training leaves behind (train.best_path)."""
    if ckpt is None and model is None:
        best = settings.train.best_path
        if not Path(best).is_file():
            raise UsageError(f"no model given and {best} does not exist: pass --ckpt or --model")
        return Path(best), None
    return ckpt, model


def _check_csv_names(sources: Sequence[ImageSource]) -> None:
    seen: dict[str, Path] = {}
    for source in sources:
        if source.name in seen:
            raise UsageError(
                f"CSV output needs one row per file name, but '{source.name}' is both {seen[source.name]} "
                f"and {source.path}; use --format json or infer the folders separately"
            )
        seen[source.name] = source.path


def _draw(result: ImagePrediction, draw_dir: Path) -> None:
    from facekp_cli.plots import draw_keypoints, save_image

    if result.faces is None:
        sets, boxes = [result.points], []
    else:
        sets, boxes = [f.points for f in result.faces], [f.box for f in result.faces]
    image = draw_keypoints(result.image, sets, boxes=boxes)
    save_image(draw_dir / Path(result.source.name).with_suffix(".jpg"), image)


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
) -> InferResult:
    """Predict every image; an unreadable file is recorded (and passed to on_image) and the run goes on.

    Everything that can fail before predicting (model, inputs, flags) fails before the output file is
    touched; the output itself is replaced atomically at the end.
    """
    cfg = settings.infer
    out = Path(out)
    fmt = output_format(settings, out, fmt)
    ckpt, model = resolve_model(settings, ckpt, model)
    sources = find_images(inputs, recursive=cfg.recursive)
    if fmt == "csv":
        _check_csv_names(sources)
    predictor: Predictor = open_predictor(ckpt, model, cfg.device)
    names = predictor.meta.keypoint_names
    header = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "facekp_version": __version__,
        "model": predictor.provenance(),
        "keypoint_names": list(names),
        "detect": cfg.detect,
    }
    failed: list[FailedImage] = []
    faces = 0
    started = time.perf_counter()
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        if on_start is not None:  # only once the output is known to be writable
            on_start(len(sources))
        writer = CsvPredictionsWriter(fh, names) if fmt == "csv" else JsonPredictionsWriter(fh, header, names)
        results = predict_images(
            predictor,
            sources,
            batch_size=cfg.batch_size,
            workers=cfg.num_workers,
            detect=cfg.detect,
            keep_images=draw_dir is not None,
        )
        for result in results:
            writer.write(result)
            if result.error is not None:
                failed.append(FailedImage(str(result.source.path), result.error))
            else:
                faces += len(result.faces or ())
                if draw_dir is not None:
                    _draw(result, Path(draw_dir))
            if on_image is not None:
                on_image(result)
        seconds = time.perf_counter() - started
        summary = {"images": len(sources), "failed": len(failed), "seconds": round(seconds, 3)}
        if cfg.detect:
            summary["faces"] = faces
        writer.close(summary)
    return InferResult(
        out, fmt, len(sources), tuple(failed), faces if cfg.detect else None, seconds,
        predictor.provenance(), Path(draw_dir) if draw_dir else None,
    )  # fmt: skip
