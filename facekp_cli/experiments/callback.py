"""`MlflowTracker`, the Lightning Callback that logs a training run from global rank 0.

Params (the flattened settings), per-epoch metrics, provenance tags and, at the end, the resolved
config, the best checkpoint, a picture of validation predictions and the learning-rate curve.
A run that crashes ends FAILED, an interrupted one KILLED; never left RUNNING."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from facekp_cli.errors import ExternalServiceError
from facekp_cli.experiments.client import experiment_id_for, now_ms, open_client, resolve_uri
from facekp_cli.experiments.journal import PendingJournal, journal_key, offline_warning
from facekp_cli.experiments.plots import lr_curve_png, predictions_png
from facekp_cli.experiments.registry import log_pyfunc_model
from facekp_cli.experiments.replay import apply_call, replay_journal
from facekp_cli.settings import Settings

log = logging.getLogger(__name__)


class MlflowTracker(L.Callback):
    """Creates (or, on resume, reopens) the MLflow run and logs into it from global rank 0."""

    def __init__(self, settings: Settings, tags: dict[str, str], run_id: str | None = None) -> None:
        self.settings = settings
        self.uri = resolve_uri(settings)
        self.tags = {k: v for k, v in tags.items() if v is not None}
        self.run_id = run_id
        self.client = None
        self.lr_steps: list[tuple[int, float]] = []
        self.journal: PendingJournal | None = None  # set once the server stops answering

    @property
    def offline(self) -> bool:
        return self.journal is not None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not trainer.is_global_zero or self.client is not None:
            return
        from mlflow.entities import Param, RunStatus

        self.client = open_client(self.uri, self.settings.tracking.timeout_s)
        try:
            if self.run_id:  # resume: same run, params already logged
                self.client.update_run(self.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            else:
                experiment = experiment_id_for(self.client, self.settings.tracking.experiment, self.uri)
                run = self.client.create_run(
                    experiment, run_name=self.tags.get("mlflow.runName"), tags=self.tags
                )
                self.run_id = run.info.run_id
                params = [Param(k, str(v)) for k, v in self.settings.flat().items()]
                for start in range(0, len(params), 100):
                    self._send(
                        {"op": "params", "params": [[p.key, p.value] for p in params[start : start + 100]]}
                    )
        except Exception as exc:
            raise ExternalServiceError(f"MLflow at {self.uri}: cannot start the run ({exc})") from exc
        pl_module.mlflow_run_id = self.run_id

    def _send(self, op: dict[str, Any]) -> None:
        """Make the call now, or keep it in the journal once the server has stopped answering."""
        op = {**op, "run_id": self.run_id}
        if not self.offline:
            try:
                apply_call(self.client, op)
                return
            except Exception as exc:
                self.journal = PendingJournal(
                    self.settings.tracking.pending_dir, journal_key("train", self.run_id), self.uri
                )
                log.warning(offline_warning(self.uri, self.journal, exc))
        if op["op"] == "artifact":  # replay sends only files inside the journal's folder
            op["path"] = self.journal.keep_file(op["path"])
        self.journal.add(op)

    def _reconnect(self) -> None:
        """Once the server answers again, send what was kept and carry on logging directly."""
        if not self.offline:
            return
        try:
            replay_journal(self.journal.path, self.uri, self.settings.tracking.timeout_s)
        except (ExternalServiceError, OSError):
            return
        log.info("MLflow at %s answers again; the kept tracking calls were sent", self.uri)
        self.journal = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.is_global_zero and trainer.optimizers:
            self.lr_steps.append((trainer.global_step, trainer.optimizers[0].param_groups[0]["lr"]))

    def _log_metrics(self, trainer: L.Trainer, prefix: str, extra: dict[str, float] | None = None) -> None:
        if not trainer.is_global_zero or self.client is None:
            return
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}
        values.update(extra or {})
        stamp, epoch = now_ms(), trainer.current_epoch
        metrics = [[k, v, stamp, epoch] for k, v in values.items() if np.isfinite(v)]
        if metrics:
            self._send({"op": "metrics", "metrics": metrics})

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:  # logged as soon as they exist, so an interrupt cannot lose them
            self._log_metrics(trainer, "val_")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.client is not None:
            self._reconnect()
        self._log_metrics(trainer, "train_", {"lr": self.lr_steps[-1][1]} if self.lr_steps else None)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or self.client is None:
            return
        self._reconnect()
        # Files made for the run live only until sent (an offline journal keeps its own link or copy).
        with tempfile.TemporaryDirectory(prefix="facekp-mlflow-") as scratch:
            self._log_artifacts(trainer, pl_module, Path(scratch))
        self._send({"op": "terminate", "status": "FINISHED"})

    def _log_artifacts(self, trainer: L.Trainer, pl_module: L.LightningModule, scratch: Path) -> None:
        config = scratch / "config.json"
        config.write_text(json.dumps(self.settings.to_dict(), indent=2) + "\n", encoding="utf-8")
        self._send({"op": "artifact", "path": str(config)})
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if best and Path(best).is_file():
            self._send({"op": "artifact", "path": best, "artifact_path": "checkpoints"})
        if self.lr_steps:
            self._send({"op": "artifact", "path": str(lr_curve_png(self.lr_steps, scratch))})
        datamodule = trainer.datamodule
        if datamodule is not None:
            picture = predictions_png(pl_module, datamodule.dataset("val"), scratch)
            self._send({"op": "artifact", "path": str(picture)})
        if self.settings.tracking.log_model and best and Path(best).is_file():
            try:
                self._log_model(Path(best), scratch)
            except Exception as exc:  # a Model is an extra: never lose the run's end over it
                log.warning("MLflow at %s: the best checkpoint was not logged as a Model (%s)", self.uri, exc)

    def _log_model(self, best: Path, scratch: Path) -> None:
        """The best checkpoint as an MLflow Model (ONNX inside); registered if tracking.register_as is set."""
        from facekp_cli.model.checkpoint import load_checkpoint
        from facekp_cli.model.export import export_onnx
        from facekp_cli.model.metadata import meta_to_props
        from facekp_cli.provenance import sha256_file

        loaded = load_checkpoint(best)
        onnx_path = scratch / "model.onnx"
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
            self._send({"op": "terminate", "status": status})
        except Exception as exc:  # the original error matters more than this one
            log.warning("could not mark MLflow run %s %s: %s", self.run_id, status, exc)
