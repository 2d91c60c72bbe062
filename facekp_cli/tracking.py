"""MLflow: the only module that talks to MLflow.

Training logs through `MlflowTracker`, a Lightning Callback that acts on global rank 0 only:
params (the flattened settings), per-epoch metrics, provenance tags and, at the end, the
resolved config, the best checkpoint, a picture of validation predictions and the learning-rate
curve. A run that crashes ends FAILED, an interrupted one KILLED; never left RUNNING.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from facekp_cli.errors import ExternalServiceError
from facekp_cli.settings import Settings

DEFAULT_URI = "sqlite:///mlflow.db"
log = logging.getLogger(__name__)


def resolve_uri(settings: Settings) -> str:
    """tracking.uri, else $MLFLOW_TRACKING_URI, else a SQLite store in the current folder."""
    return settings.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def check_reachable(uri: str, timeout_s: float) -> None:
    """Fail fast, before any training, when an HTTP(S) tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    url = f"{uri.rstrip('/')}/health"
    hint = "start the server, set tracking.uri / MLFLOW_TRACKING_URI, or pass --no-tracking"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            return
    except urllib.error.HTTPError as exc:
        if exc.code < 500:  # it answered; auth or a proxy may hide /health
            return
        raise ExternalServiceError(
            f"MLflow tracking server {uri} answered HTTP {exc.code}", hint=hint
        ) from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ExternalServiceError(
            f"MLflow tracking server {uri} is unreachable ({reason}; waited {timeout_s:g} s)", hint=hint
        ) from exc


def _client(uri: str):
    # A new SQLite store announces its migrations; nothing for the user to act on.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store").setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, name: str, uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # keep artifacts beside the database, not in whatever cwd is
        location = (Path(uri[len("sqlite:///") :]).resolve().parent / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


class MlflowTracker(L.Callback):
    """Creates (or, on resume, reopens) the MLflow run and logs into it from global rank 0."""

    def __init__(self, settings: Settings, tags: dict[str, str], run_id: str | None = None) -> None:
        self.settings = settings
        self.uri = resolve_uri(settings)
        self.tags = {k: v for k, v in tags.items() if v is not None}
        self.run_id = run_id
        self.client = None
        self.lr_steps: list[tuple[int, float]] = []
        self.artifact_dir = Path(tempfile.mkdtemp(prefix="facekp-mlflow-"))

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not trainer.is_global_zero or self.client is not None:
            return
        from mlflow.entities import Param, RunStatus

        self.client = _client(self.uri)
        try:
            if self.run_id:  # resume: same run, params already logged
                self.client.update_run(self.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            else:
                experiment = _experiment_id(self.client, self.settings.tracking.experiment, self.uri)
                run = self.client.create_run(
                    experiment, run_name=self.tags.get("mlflow.runName"), tags=self.tags
                )
                self.run_id = run.info.run_id
                params = [Param(k, str(v)) for k, v in self.settings.flat().items()]
                for start in range(0, len(params), 100):
                    self.client.log_batch(self.run_id, params=params[start : start + 100])
        except Exception as exc:
            raise ExternalServiceError(f"MLflow at {self.uri}: cannot start the run ({exc})") from exc
        pl_module.mlflow_run_id = self.run_id

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.is_global_zero and trainer.optimizers:
            self.lr_steps.append((trainer.global_step, trainer.optimizers[0].param_groups[0]["lr"]))

    def _log_metrics(self, trainer: L.Trainer, prefix: str, extra: dict[str, float] | None = None) -> None:
        if not trainer.is_global_zero or self.client is None:
            return
        from mlflow.entities import Metric

        values = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}
        values.update(extra or {})
        stamp, epoch = _now_ms(), trainer.current_epoch
        metrics = [Metric(k, v, stamp, epoch) for k, v in values.items() if np.isfinite(v)]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:  # logged as soon as they exist, so an interrupt cannot lose them
            self._log_metrics(trainer, "val_")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_metrics(trainer, "train_", {"lr": self.lr_steps[-1][1]} if self.lr_steps else None)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or self.client is None:
            return
        config = self.artifact_dir / "config.json"
        config.write_text(json.dumps(self.settings.to_dict(), indent=2) + "\n", encoding="utf-8")
        self.client.log_artifact(self.run_id, str(config))
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if best and Path(best).is_file():
            self.client.log_artifact(self.run_id, best, "checkpoints")
        if self.lr_steps:
            self.client.log_artifact(self.run_id, str(_lr_curve_png(self.lr_steps, self.artifact_dir)))
        datamodule = trainer.datamodule
        if datamodule is not None:
            picture = _predictions_png(pl_module, datamodule.dataset("val"), self.artifact_dir)
            self.client.log_artifact(self.run_id, str(picture))
        if self.settings.tracking.log_model and best and Path(best).is_file():
            self._log_model(Path(best))
        self.client.set_terminated(self.run_id, "FINISHED")

    def _log_model(self, best: Path) -> None:
        """The best checkpoint as an MLflow Model (ONNX inside); registered if tracking.register_as is set."""
        from facekp_cli.model.checkpoint import load_checkpoint
        from facekp_cli.predict.metadata import meta_to_props
        from facekp_cli.provenance import sha256_file
        from facekp_cli.services.export import export_onnx

        loaded = load_checkpoint(best)
        onnx_path = self.artifact_dir / "model.onnx"
        props = meta_to_props(loaded.meta, sha256_file(best))
        export_onnx(loaded, onnx_path, self.settings.export.opset, props)
        register_as = self.settings.tracking.register_as
        logged = log_pyfunc_model(self.uri, self.run_id, onnx_path, loaded.meta, "onnx", register_as)
        if register_as:
            self.client.set_model_version_tag(register_as, logged["version"], "format", "onnx")

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not trainer.is_global_zero or self.client is None or self.run_id is None:
            return
        status = "KILLED" if isinstance(exception, KeyboardInterrupt) else "FAILED"
        try:
            self.client.set_terminated(self.run_id, status)
        except Exception as exc:  # the original error matters more than this one
            log.warning("could not mark MLflow run %s %s: %s", self.run_id, status, exc)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def _lr_curve_png(steps: list[tuple[int, float]], folder: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot([s for s, _ in steps], [lr for _, lr in steps])
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("learning rate")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path = folder / "lr_curve.png"
    figure.savefig(path)
    return path


def _predictions_png(pl_module: Any, dataset: Any, folder: Path, count: int = 8) -> Path:
    """Predictions (red) against truth (green) on the first validation images, in the network frame."""
    import torch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    items = [dataset[i] for i in range(min(count, len(dataset)))]
    images = torch.stack([item["image"] for item in items]).to(pl_module.device)
    was_training = pl_module.model.training
    pl_module.model.eval()
    with torch.no_grad():
        pred = pl_module.model(images).float().cpu().numpy()
    pl_module.model.train(was_training)
    prep = dataset.prep
    figure = Figure(figsize=(2.2 * len(items), 2.4), dpi=100)
    FigureCanvasAgg(figure)
    for column, item in enumerate(items):
        axes = figure.add_subplot(1, len(items), column + 1)
        pixels = item["image"].numpy().transpose(1, 2, 0) * np.asarray(prep.std) + np.asarray(prep.mean)
        axes.imshow(np.clip(pixels.squeeze(), 0, 1), cmap="gray" if pixels.shape[2] == 1 else None)
        side = prep.input_size
        truth = (item["target"].numpy() + 1) / 2 * side
        mask = item["mask"].numpy()
        guess = (pred[column] + 1) / 2 * side
        axes.scatter(truth[mask, 0] - 0.5, truth[mask, 1] - 0.5, s=9, c="lime")
        axes.scatter(guess[:, 0] - 0.5, guess[:, 1] - 0.5, s=9, c="red", marker="x")
        axes.set_axis_off()
    figure.tight_layout()
    path = folder / "val_predictions.png"
    figure.savefig(path)
    return path


# --- evaluation and model registry (used by `facekp eval` and `facekp export --register`) ---


def log_evaluation(settings: Settings, run_id: str, metrics: dict[str, float], files: list[Path]) -> None:
    """Log eval metrics and files (report, plots, worst images) into an existing run, under eval/."""
    from mlflow.entities import Metric

    uri = resolve_uri(settings)
    check_reachable(uri, settings.tracking.timeout_s)
    client = _client(uri)
    try:
        client.get_run(run_id)
    except Exception as exc:
        raise ExternalServiceError(f"MLflow at {uri}: run {run_id} not found ({exc})") from exc
    try:
        stamp = _now_ms()
        client.log_batch(run_id, metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items()])
        for path in files:
            sub = "eval/worst" if Path(path).parent.name == "worst" else "eval"
            client.log_artifact(run_id, str(path), sub)
    except Exception as exc:
        raise ExternalServiceError(f"MLflow at {uri}: cannot log evaluation to run {run_id} ({exc})") from exc


def register_model(
    settings: Settings, path: Path, name: str, meta: Any, fmt: str, aliases: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Log an exported model file as an MLflow Model (python_function flavour) and register it.

    The Model goes into the training run recorded in the checkpoint (else a new 'export' run) and
    becomes a new version of `name`; each alias (e.g. champion) then points at that version. The
    registry needs a database-backed store (sqlite:///..., or a server started with one).
    """
    uri = resolve_uri(settings)
    check_reachable(uri, settings.tracking.timeout_s)
    client = _client(uri)
    try:
        run_id = _run_for_model(client, settings, uri, getattr(meta, "mlflow_run_id", None), name)
        logged = log_pyfunc_model(uri, run_id, path, meta, fmt, register_as=name)
        version = logged["version"]
        tags = {"format": fmt, "data_hash": str(getattr(meta, "data_hash", None))}
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        for alias in aliases:
            client.set_registered_model_alias(name, alias, version)
    except ExternalServiceError:
        raise
    except Exception as exc:
        raise ExternalServiceError(
            f"MLflow at {uri}: cannot register model '{name}' ({str(exc).splitlines()[0]})",
            hint="the model registry needs a database-backed store such as sqlite:///mlflow.db",
        ) from exc
    return {
        "name": name,
        "version": str(version),
        "model_uri": f"models:/{name}/{version}",
        "aliases": list(aliases),
        "run_id": run_id,
        "source": logged["model_uri"],
        "uri": uri,
    }


def _run_for_model(client, settings: Settings, uri: str, run_id: str | None, name: str) -> str:
    if run_id:
        try:
            client.get_run(run_id)
            return run_id
        except Exception:
            pass  # the checkpoint came from another tracking store
    experiment = _experiment_id(client, settings.tracking.experiment, uri)
    run_id = client.create_run(experiment, run_name=f"export-{name}").info.run_id
    client.set_terminated(run_id, "FINISHED")
    return run_id


def log_pyfunc_model(
    uri: str, run_id: str, path: Path, meta: Any, fmt: str, register_as: str | None = None
) -> dict[str, Any]:
    """Log `path` (ONNX or TorchScript) as the artifact of a facekp python_function Model in a run."""
    import importlib.metadata

    import mlflow

    from facekp_cli.predict import pyfunc

    logging.getLogger("mlflow").setLevel(logging.ERROR)  # its INFO/hint lines are not the user's
    packages = ["mlflow", "numpy", "pandas", "pillow", "opencv-python-headless"]
    packages.append("onnxruntime" if fmt == "onnx" else "torch")
    # facekp itself must be importable where the Model runs (`mlflow models serve --env-manager local`).
    requirements = [f"{p}=={importlib.metadata.version(p)}" for p in packages]
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    chatter = io.StringIO()  # "Successfully registered model ...": facekp reports the version itself
    try:
        with (
            mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None),
            contextlib.redirect_stderr(chatter),
        ):
            info = mlflow.pyfunc.log_model(
                name="facekp_model",
                python_model=pyfunc.FacekpPyfunc(),
                artifacts={pyfunc.ARTIFACT_KEY: str(path)},
                signature=pyfunc.signature(),
                input_example=pyfunc.input_example(),
                pip_requirements=requirements,
                registered_model_name=register_as,
                metadata={"facekp_format": fmt, "data_hash": str(getattr(meta, "data_hash", None))},
            )
    finally:
        mlflow.set_tracking_uri(previous)
    return {"model_uri": info.model_uri, "version": info.registered_model_version}



def start_parent_run(settings: Settings, name: str, tags: dict[str, str], run_id: str | None = None) -> str:
    """Open (or reopen, for a resumed study) the run that groups a study's trials as its children."""
    from mlflow.entities import RunStatus

    uri = resolve_uri(settings)
    check_reachable(uri, settings.tracking.timeout_s)
    client = _client(uri)
    try:
        if run_id:
            client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            return run_id
        experiment = _experiment_id(client, settings.tracking.experiment, uri)
        return client.create_run(experiment, run_name=name, tags=tags).info.run_id
    except Exception as exc:
        raise ExternalServiceError(f"MLflow at {uri}: cannot start the run '{name}' ({exc})") from exc


def finish_parent_run(
    settings: Settings, run_id: str, params: dict[str, Any], metrics: dict[str, float], status: str
) -> None:
    """Log the study's best parameters and value into its parent run and close it."""
    from mlflow.entities import Metric, Param

    uri = resolve_uri(settings)
    client = _client(uri)
    try:
        stamp = _now_ms()
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items()],
            params=[Param(f"best.{k}", str(v)) for k, v in params.items()],
        )
        client.set_terminated(run_id, status)
    except Exception as exc:
        raise ExternalServiceError(f"MLflow at {uri}: cannot finish run {run_id} ({exc})") from exc


def mark_trial_run(
    settings: Settings, parent_run_id: str, trial_tag: str, tags: dict[str, str], status: str
) -> None:
    """Tag and set the status of the child run of `parent_run_id` whose facekp.tune.trial is `trial_tag`
    (a pruned trial ends in an exception, which training records as FAILED)."""
    client = _client(resolve_uri(settings))
    query = f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`facekp.tune.trial` = '{trial_tag}'"
    experiment = _experiment_id(client, settings.tracking.experiment, resolve_uri(settings))
    for run in client.search_runs([experiment], filter_string=query):
        for key, value in tags.items():
            client.set_tag(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id, status)
