"""`facekp eval`: docs/DESIGN.md's metrics for a checkpoint on a labelled split, or for a predictions file.

Every report carries the mean-shape baseline, computed on the same images, with the source of
its layout: the checkpoint's training mean shape, else the train/ split beside the labels, else
the evaluated labels themselves (an optimistic floor, and the report says so).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from facekp_cli import __version__
from facekp_cli.atomic import write_text_atomic
from facekp_cli.data.format import GT_FILE, IMAGES_DIR, read_gt_csv, read_split
from facekp_cli.data.images import displayed_size
from facekp_cli.errors import DataError, ExternalServiceError, UsageError
from facekp_cli.metrics import (
    MetricSummary,
    ced,
    mean_shape,
    mean_shape_predictions,
    nme_per_image,
    summarise,
)
from facekp_cli.model.checkpoint import ModelMeta
from facekp_cli.predict.backends import open_predictor
from facekp_cli.predict.samples import resolve_split
from facekp_cli.predict.sources import ImageSource
from facekp_cli.predict.stream import predict_images
from facekp_cli.settings import Settings

REPORT_SCHEMA = "facekp.eval"
REPORT_VERSION = 1


@dataclass(frozen=True)
class WorstImage:
    filename: str
    nme: float  # percent
    drawing: str | None = None


@dataclass(frozen=True)
class EvalResult:
    source: dict[str, Any]  # what was evaluated: a checkpoint's provenance or a predictions file
    gt: Path
    metrics: MetricSummary
    baseline: MetricSummary
    baseline_source: str
    worst: tuple[WorstImage, ...]
    report: Path | None = None
    plots: dict[str, str] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    notes: tuple[str, ...] = ()  # warnings for the user, e.g. MLflow logging that was skipped
    mlflow_pending: str | None = None  # the journal holding the logging a dead server missed

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA,
            "schema_version": REPORT_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "facekp_version": __version__,
            "source": self.source,
            "gt": str(self.gt),
            "images": self.metrics.images,
            "metrics": self.metrics.to_dict(),
            "baseline": {"source": self.baseline_source, **self.baseline.to_dict()},
            "worst": [vars(w) for w in self.worst],
            "plots": self.plots,
            "mlflow_run_id": self.mlflow_run_id,
            "notes": list(self.notes),
            "mlflow_pending": self.mlflow_pending,
        }


@dataclass(frozen=True)
class _Scored:
    filenames: tuple[str, ...]
    pred: np.ndarray
    gt: np.ndarray
    sizes: np.ndarray
    images_dir: Path | None
    source: dict[str, Any]
    meta: ModelMeta | None = None


def _predict_split(
    settings: Settings,
    ckpt: Path | None,
    model: Path | None,
    data: Path | None,
    on_start: Callable[[int], None] | None = None,
    on_image: Callable[[object], None] | None = None,
) -> tuple[_Scored, Path]:
    split_dir = resolve_split(data, settings.data.root)
    split = read_split(split_dir)
    if len(split) == 0:
        raise DataError(f"{split_dir / GT_FILE}: no images to evaluate")
    predictor = open_predictor(ckpt, model, settings.infer.device)
    sources = [ImageSource(split.image_path(i), name) for i, name in enumerate(split.filenames)]
    pred = np.zeros(split.keypoints.shape, np.float32)
    sizes = np.zeros((len(split), 2), np.float64)
    results = predict_images(
        predictor, sources, batch_size=settings.infer.batch_size, workers=settings.infer.num_workers
    )
    if on_start is not None:
        on_start(len(sources))
    for index, result in enumerate(results):
        if result.error is not None:
            raise DataError(f"{split_dir / GT_FILE}: {result.error}")
        pred[index], sizes[index] = result.points, (result.width, result.height)
        if on_image is not None:
            on_image(result)
    scored = _Scored(
        split.filenames,
        pred,
        split.keypoints,
        sizes,
        split.images_dir,
        predictor.provenance(),
        predictor.meta,
    )
    return scored, split_dir / GT_FILE


def _read_predictions(path: Path) -> tuple[dict[str, np.ndarray], dict[str, tuple[int, int]]]:
    """Predictions by filename from gt.csv-format CSV or facekp's JSON (which also carries sizes)."""
    if path.suffix.lower() != ".json":
        names, points = read_gt_csv(path)
        return dict(zip(names, points, strict=True)), {}
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        entries = payload["images"]
        names = payload["keypoint_names"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a facekp predictions file ({exc})") from exc
    points, sizes = {}, {}
    for entry in entries:
        if "points" not in entry:
            continue  # failed files and detect-mode entries have no single set of points
        points[entry["name"]] = np.array([[entry["points"][n]["x"], entry["points"][n]["y"]] for n in names])
        sizes[entry["name"]] = (entry["width"], entry["height"])
    return points, sizes


def _score_predictions(pred_path: Path, gt_path: Path) -> _Scored:
    filenames, gt = read_gt_csv(gt_path)
    if not filenames:
        raise DataError(f"{gt_path}: no images to evaluate")
    by_name, known_sizes = _read_predictions(pred_path)
    missing = [name for name in filenames if name not in by_name]
    if missing:
        raise DataError(
            f"{pred_path}: no prediction for {len(missing)} of {len(filenames)} images in {gt_path} "
            f"(first: {missing[0]})"
        )
    images_dir = gt_path.parent / IMAGES_DIR
    sizes = np.array(
        [known_sizes.get(name) or displayed_size(images_dir / name) for name in filenames], np.float64
    )
    pred = np.stack([by_name[name] for name in filenames]).astype(np.float32)
    source = {"kind": "predictions", "path": str(pred_path)}
    return _Scored(tuple(filenames), pred, gt, sizes, images_dir if images_dir.is_dir() else None, source)


def _baseline_layout(scored: _Scored, gt_path: Path) -> tuple[np.ndarray, str]:
    if scored.meta is not None and scored.meta.mean_shape is not None:
        return np.asarray(scored.meta.mean_shape, np.float64), "training mean shape stored in the model"
    train_dir = gt_path.parent.parent / "train"
    if (train_dir / GT_FILE).is_file() and train_dir.resolve() != gt_path.parent.resolve():
        train = read_split(train_dir)
        if len(train):
            sizes = np.array([displayed_size(train.image_path(i)) for i in range(len(train))], np.float64)
            return mean_shape(train.keypoints, sizes), f"train split mean shape ({train_dir})"
    return mean_shape(scored.gt, scored.sizes), "mean shape of the evaluated labels themselves (optimistic)"


def _plots(scored: _Scored, metrics, baseline, baseline_pred, folder: Path, worst_n: int):
    from facekp_cli.plots import ced_plot, per_point_plot

    model_nme = nme_per_image(scored.pred, scored.gt)
    files = {
        "ced": str(
            ced_plot(folder / "ced.png", {
                f"model (AUC@0.10 {metrics.auc10:.3f})": ced(model_nme),
                f"mean shape (AUC@0.10 {baseline.auc10:.3f})": ced(nme_per_image(baseline_pred, scored.gt)),
            })
        ),
        "per_point": str(
            per_point_plot(folder / "per_point_nme.png", list(metrics.per_point_nme), {
                "model": list(metrics.per_point_nme.values()),
                "mean shape": list(baseline.per_point_nme.values()),
            })
        ),
    }  # fmt: skip
    return files, _worst(scored, worst_n, folder / "worst")


def _worst(scored: _Scored, count: int, folder: Path | None) -> tuple[WorstImage, ...]:
    """The `count` images with the highest NME; drawn (truth green, prediction red) into `folder`."""
    from facekp_cli.data.images import decode_image
    from facekp_cli.plots import draw_comparison, save_image

    nme = nme_per_image(scored.pred, scored.gt)
    order = [i for i in np.argsort(-np.nan_to_num(nme, nan=-1.0), kind="stable") if np.isfinite(nme[i])]
    worst = []
    for rank, index in enumerate(order[:count], start=1):
        name, drawing = scored.filenames[index], None
        if folder is not None and scored.images_dir is not None and (scored.images_dir / name).is_file():
            image = decode_image(scored.images_dir / name)
            picture = draw_comparison(image, scored.pred[index], scored.gt[index])
            drawing = str(save_image(folder / f"{rank:02d}_{Path(name).stem}.jpg", picture))
        worst.append(WorstImage(name, float(nme[index] * 100), drawing))
    return tuple(worst)


def run(
    settings: Settings,
    *,
    ckpt: Path | None = None,
    model: Path | None = None,
    data: Path | None = None,
    pred: Path | None = None,
    gt: Path | None = None,
    out: Path | None = None,
    plots_dir: Path | None = None,
    mlflow_run: str | None = None,
    metrics_out: Path | None = None,
    on_start: Callable[[int], None] | None = None,
    on_image: Callable[[object], None] | None = None,
) -> EvalResult:
    """Score a checkpoint or exported model on a labelled split (default data.root/test), or --pred
    against --gt; on_start(n)/on_image(result) follow the predicting loop."""
    if pred is not None:
        if ckpt is not None or model is not None or data is not None:
            raise UsageError("--pred is scored against --gt; it does not take --ckpt, --model or --data")
        gt_path = Path(gt) if gt is not None else resolve_split(None, settings.data.root) / GT_FILE
        scored = _score_predictions(Path(pred), gt_path)
    else:
        if gt is not None:
            raise UsageError("--gt goes with --pred; to score a checkpoint on another split use --data DIR")
        from facekp_cli.model.resolve import resolve

        choice = resolve(settings, ckpt, model, device=settings.infer.device)
        ckpt, model = choice.ckpt, choice.model
        scored, gt_path = _predict_split(settings, ckpt, model, data, on_start, on_image)
    metrics = summarise(scored.pred, scored.gt, scored.sizes)
    layout, baseline_source = _baseline_layout(scored, gt_path)
    baseline_pred = mean_shape_predictions(layout, scored.sizes)
    baseline = summarise(baseline_pred, scored.gt, scored.sizes)

    run_id = mlflow_run
    if run_id is None and scored.meta is not None and settings.tracking.enabled:
        run_id = scored.meta.mlflow_run_id
    with tempfile.TemporaryDirectory(prefix="facekp-eval-") as scratch:
        folder = Path(plots_dir) if plots_dir is not None else Path(scratch)
        listed = _worst(scored, settings.eval.worst_n, None)
        plots, worst = {}, listed
        if plots_dir is not None or run_id:  # MLflow gets the pictures even without --plots
            plots, worst = _plots(scored, metrics, baseline, baseline_pred, folder, settings.eval.worst_n)
        shown_worst = worst if plots_dir is not None else listed
        result = EvalResult(
            scored.source, gt_path, metrics, baseline, baseline_source, shown_worst,
            Path(out) if out else None, plots if plots_dir is not None else {}, run_id,
        )  # fmt: skip
        if run_id:
            from facekp_cli.experiments import client, runs

            report_file = Path(scratch) / "eval_report.json"
            report_file.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
            files = [report_file, *(Path(p) for p in plots.values())]
            files += [Path(w.drawing) for w in worst if w.drawing]
            try:
                pending = runs.log_evaluation(settings, run_id, _flat_metrics(metrics, baseline), files)
                if pending is not None:  # the server did not answer: kept, not lost
                    note = (
                        f"MLflow at {client.resolve_uri(settings)} did not answer; the evaluation is kept "
                        f"in {pending}, sent to run {run_id} with: facekp tracking sync"
                    )
                    result = replace(result, notes=(*result.notes, note), mlflow_pending=str(pending))
            except ExternalServiceError as exc:
                if mlflow_run is not None:  # asked for: a failure is an error
                    raise
                # the checkpoint's own run is a convenience: without it the evaluation still stands
                note = f"not logged to the checkpoint's MLflow run {run_id}: {exc}"
                result = replace(result, mlflow_run_id=None, notes=(note,))
        if out is not None:
            write_text_atomic(out, json.dumps(result.to_dict(), indent=2) + "\n")
        if metrics_out is not None:  # flat numbers for `dvc metrics` / `dvc exp show` and CI checks
            write_text_atomic(metrics_out, json.dumps(summary_metrics(metrics, baseline), indent=2) + "\n")
    return result


def summary_metrics(metrics: MetricSummary, baseline: MetricSummary) -> dict[str, float | int]:
    """The headline numbers beside the mean-shape floor, one level deep."""
    flat: dict[str, float | int] = {"images": int(metrics.images)}
    for prefix, summary in (("", metrics), ("baseline_", baseline)):
        for key in ("nme", "mse100", "fr10", "auc10", "pck05", "pck10"):
            value = float(getattr(summary, key))
            if np.isfinite(value):
                flat[f"{prefix}{key}"] = round(value, 5)
    return flat


def _flat_metrics(metrics: MetricSummary, baseline: MetricSummary) -> dict[str, float]:
    out: dict[str, float] = {}
    for prefix, summary in (("eval", metrics), ("eval_baseline", baseline)):
        for key in ("mse100", "nme", "fr10", "auc10", "pck05", "pck10"):
            out[f"{prefix}_{key}"] = float(getattr(summary, key))
    for name, value in metrics.per_point_nme.items():
        out[f"eval_nme_{name}"] = float(value)
    return {k: v for k, v in out.items() if np.isfinite(v)}
