"""MLflow: the only module that talks to MLflow.

Training logs through `MlflowTracker`, a Lightning Callback that acts on global rank 0 only:
params (the flattened settings), per-epoch metrics, provenance tags and, at the end, the
resolved config, the best checkpoint, a picture of validation predictions and the learning-rate
curve. A run that crashes ends FAILED, an interrupted one KILLED; never left RUNNING.

A tracking server that stops answering mid-run does not stop the work: every call that fails is
appended to a local journal (`PendingJournal`, one JSON line per call, under tracking.pending_dir),
one warning line says so, and the journal is replayed into the server as soon as it answers again
(checked at each epoch end) or by `facekp tracking sync`. The same holds for `facekp eval` logging
and `facekp export --register`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import uuid
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


def sqlite_store(uri: str) -> Path | None:
    """The database file of a sqlite:/// tracking URI (relative to the current folder), else None."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


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


def _client(uri: str, timeout_s: float = 5.0):
    # A new SQLite store announces its migrations; nothing for the user to act on.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store").setLevel(logging.WARNING)
    # urllib3 logs each retry of a dead server; facekp says it once, in its own words.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    # MLflow retries a dead server 7 times with exponential back-off (minutes); a training epoch
    # should not wait that long to learn it must keep its metrics locally. A user's own choice wins.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    # A dead server refuses at once; a slow one (a busy machine) gets time to answer.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(30, round(timeout_s * 6))))
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, name: str, uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location, store = None, sqlite_store(uri)
    if store is not None:  # keep artifacts beside the database, not in whatever cwd is
        location = (store.resolve().parent / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


class PendingJournal:
    """Calls a tracking server did not take, kept as JSON lines to replay later, in order.

    Files the calls refer to that would not outlive the command (temporary pictures, reports) are
    copied beside the journal; lasting ones (checkpoints, exported models) are referred to by path.
    """

    def __init__(self, folder: Path, key: str, uri: str) -> None:
        self.folder, self.uri = Path(folder), uri
        self.path = self.folder / f"{key}.jsonl"
        self.files = self.folder / key

    def add(self, op: dict[str, Any]) -> None:
        from facekp_cli.atomic import raise_if_full_disk

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"uri": self.uri, **op}) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise_if_full_disk(exc, self.path)
            raise

    def keep_file(self, path: str | Path) -> str:
        """The file as it is now, kept in the journal's own folder until the journal is replayed
        (replay sends nothing from elsewhere). A hard link where the file system allows it (a
        checkpoint costs no space; atomic rewrites of the original leave the link's content alone),
        else a copy."""
        folder = self.files / uuid.uuid4().hex[:8]  # the artifact keeps its own name
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / Path(path).name
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        return str(target.resolve())


def _journal_key(prefix: str, run_id: str | None) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{prefix}-{(run_id or uuid.uuid4().hex)[:12]}"


def _apply(client, op: dict[str, Any]) -> None:
    """Replay one journalled call."""
    from mlflow.entities import Metric, Param

    kind, run_id = op["op"], op.get("run_id")
    if kind == "params":
        client.log_batch(run_id, params=[Param(k, v) for k, v in op["params"]])
    elif kind == "metrics":
        client.log_batch(run_id, metrics=[Metric(k, v, t, s) for k, v, t, s in op["metrics"]])
    elif kind == "artifact":
        if Path(op["path"]).is_file():  # a checkpoint deleted since is not worth failing the rest for
            client.log_artifact(run_id, op["path"], op.get("artifact_path"))
        else:
            log.warning("%s: no longer exists; not uploaded to MLflow run %s", op["path"], run_id)
    elif kind == "terminate":
        client.set_terminated(run_id, op["status"])
    elif kind == "register":
        meta = type("Meta", (), {"mlflow_run_id": run_id, "data_hash": op.get("data_hash")})()
        _register(
            client,
            op["uri"],
            op["experiment"],
            Path(op["path"]),
            op["name"],
            meta,
            op["fmt"],
            op.get("aliases", ()),
        )
    else:
        raise ValueError(f"unknown journalled call {kind!r}")


_STR, _OPT_STR, _LIST = (str,), (str, type(None)), (list,)
# The fields each journalled call needs, with their types: what `_apply` reads.
_OP_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "params": {"run_id": _STR, "params": _LIST},
    "metrics": {"run_id": _STR, "metrics": _LIST},
    "artifact": {"run_id": _STR, "path": _STR, "artifact_path": _OPT_STR},
    "terminate": {"run_id": _STR, "status": _STR},
    "register": {"run_id": _OPT_STR, "path": _STR, "name": _STR, "fmt": _STR, "experiment": _STR},
}


@dataclasses.dataclass(frozen=True)
class JournalContents:
    ops: list[dict[str, Any]]  # the calls to send, in order
    skipped: list[str]  # "<journal>:<line>: <why>" for each damaged line, which is never sent


def _op_problem(op: Any, files: Path) -> str | None:
    """Why a decoded journal line cannot be replayed, or None."""
    if not isinstance(op, dict):
        return f"not a journalled call ({type(op).__name__})"
    kind = op.get("op")
    if kind not in _OP_FIELDS:
        return f"unknown journalled call {kind!r}"
    if not isinstance(op.get("uri"), str):
        return "no server URI ('uri')"
    for key, types in _OP_FIELDS[kind].items():
        if not isinstance(op.get(key), types):
            return f"'{key}' missing or not a {' or '.join(t.__name__ for t in types)}"
    if kind == "params" and not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) for v in p) for p in op["params"]
    ):
        return "'params' must be [name, value] string pairs"
    if kind == "metrics" and not all(
        isinstance(m, list)
        and len(m) == 4
        and isinstance(m[0], str)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in m[1:])
        for m in op["metrics"]
    ):
        return "'metrics' must be [name, value, timestamp, step] entries"
    if kind == "register" and not (
        isinstance(op.get("aliases", []), list) and all(isinstance(a, str) for a in op.get("aliases", []))
    ):
        return "'aliases' must be a list of names"
    if "path" in _OP_FIELDS[kind]:
        try:
            resolved = Path(op["path"]).resolve()
        except (OSError, ValueError) as exc:  # a NUL byte, a name the file system cannot hold
            return f"unusable file path ({exc})"
        if not resolved.is_relative_to(files.resolve()):
            return f"file {op['path']} is outside the journal's folder {files}; not sent"
    return None


def read_journal(path: Path) -> JournalContents:
    """The one reader of a pending journal. Damaged lines (a torn last line from a kill, bytes that
    are not UTF-8, JSON that is not a call, missing or mistyped fields, a file outside the journal's
    own folder) are skipped and reported; the rest is returned in order. Raises OSError only when
    the file itself cannot be read."""
    files = path.with_suffix("")
    data = path.read_bytes()
    ops: list[dict[str, Any]] = []
    skipped: list[str] = []
    raw_lines = data.split(b"\n")
    for number, raw in enumerate(raw_lines, 1):
        if not raw.strip():
            continue
        torn = number == len(raw_lines)  # no newline after it: the write was cut short
        try:
            op = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            skipped.append(f"{path}:{number}: not UTF-8 text")
            continue
        except json.JSONDecodeError as exc:
            why = "torn last line (an interrupted write)" if torn else f"not JSON ({exc.msg})"
            skipped.append(f"{path}:{number}: {why}")
            continue
        problem = _op_problem(op, files)
        if problem is not None:
            skipped.append(f"{path}:{number}: {problem}")
        else:
            ops.append(op)
    return JournalContents(ops, skipped)


def replay_journal(path: Path, uri: str | None = None, timeout_s: float = 5.0) -> JournalContents:
    """Send a journal's calls to the server, in order; returns what was read (and so sent).

    The journal shrinks as calls succeed (rewritten atomically), so a failure part-way loses
    nothing and sends nothing twice but the call that failed; a finished journal is deleted. Its
    damaged lines (`read_journal`) are never sent; they are kept in `<journal>.skipped` for a look.
    """
    from facekp_cli.atomic import write_bytes_atomic, write_text_atomic

    if path.is_dir():
        raise ExternalServiceError(f"{path}: is a folder, not a journal; left alone")
    try:
        contents = read_journal(path)
    except OSError as exc:
        raise ExternalServiceError(f"{path}: cannot read the journal ({exc.strerror or exc})") from exc
    ops = contents.ops
    if contents.skipped:
        write_bytes_atomic(path.with_suffix(".skipped"), path.read_bytes())
    target = uri or (ops[0]["uri"] if ops else None)
    sent = 0
    if target is not None and ops:
        check_reachable(target, timeout_s)
        client = _client(target, timeout_s)
        try:
            for op in ops:
                _apply(client, {**op, "uri": target})
                sent += 1
        except Exception as exc:
            rest = "".join(json.dumps(op) + "\n" for op in ops[sent:])
            write_text_atomic(path, rest)
            raise ExternalServiceError(
                f"MLflow at {target}: {path}: sent {sent} of {len(ops)} calls, then failed "
                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
            ) from exc
    path.unlink()
    shutil.rmtree(path.with_suffix(""), ignore_errors=True)
    return contents


def pending_journals(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("*.jsonl")) if Path(folder).is_dir() else []


def _offline_warning(uri: str, journal: PendingJournal, exc: BaseException) -> str:
    reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return (
        f"MLflow at {uri} stopped answering ({reason}); the run goes on and its tracking calls are kept "
        f"in {journal.path}, sent when the server is back or with: facekp tracking sync"
    )


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
        self.journal: PendingJournal | None = None  # set once the server stops answering

    @property
    def offline(self) -> bool:
        return self.journal is not None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not trainer.is_global_zero or self.client is not None:
            return
        from mlflow.entities import Param, RunStatus

        self.client = _client(self.uri, self.settings.tracking.timeout_s)
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
                _apply(self.client, op)
                return
            except Exception as exc:
                self.journal = PendingJournal(
                    self.settings.tracking.pending_dir, _journal_key("train", self.run_id), self.uri
                )
                log.warning(_offline_warning(self.uri, self.journal, exc))
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
        stamp, epoch = _now_ms(), trainer.current_epoch
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
        config = self.artifact_dir / "config.json"
        config.write_text(json.dumps(self.settings.to_dict(), indent=2) + "\n", encoding="utf-8")
        self._send({"op": "artifact", "path": str(config)})
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if best and Path(best).is_file():
            self._send({"op": "artifact", "path": best, "artifact_path": "checkpoints"})
        if self.lr_steps:
            self._send({"op": "artifact", "path": str(_lr_curve_png(self.lr_steps, self.artifact_dir))})
        datamodule = trainer.datamodule
        if datamodule is not None:
            picture = _predictions_png(pl_module, datamodule.dataset("val"), self.artifact_dir)
            self._send({"op": "artifact", "path": str(picture)})
        if self.settings.tracking.log_model and best and Path(best).is_file():
            try:
                self._log_model(Path(best))
            except Exception as exc:  # a Model is an extra: never lose the run's end over it
                log.warning("MLflow at %s: the best checkpoint was not logged as a Model (%s)", self.uri, exc)
        self._send({"op": "terminate", "status": "FINISHED"})

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
            self._send({"op": "terminate", "status": status})
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


def _answers(uri: str, timeout_s: float) -> bool:
    try:
        check_reachable(uri, timeout_s)
    except ExternalServiceError:
        return False
    return True


def log_evaluation(
    settings: Settings, run_id: str, metrics: dict[str, float], files: list[Path]
) -> Path | None:
    """Log eval metrics and files (report, plots, worst images) into an existing run, under eval/.

    Returns None when logged; when the server does not answer, the journal the calls were kept
    in (sent later by `facekp tracking sync`). A run the server says it does not have is an error.
    """
    uri, timeout_s = resolve_uri(settings), settings.tracking.timeout_s
    stamp = _now_ms()
    ops: list[dict[str, Any]] = [
        {"op": "metrics", "run_id": run_id, "metrics": [[k, float(v), stamp, 0] for k, v in metrics.items()]}
    ]
    for path in files:
        sub = "eval/worst" if Path(path).parent.name == "worst" else "eval"
        ops.append({"op": "artifact", "run_id": run_id, "path": str(path), "artifact_path": sub})
    if not _answers(uri, timeout_s):
        return _keep(settings, uri, "eval", run_id, ops)
    client = _client(uri, timeout_s)
    try:
        client.get_run(run_id)
    except Exception as exc:
        if not _answers(uri, timeout_s):
            return _keep(settings, uri, "eval", run_id, ops)
        raise ExternalServiceError(f"MLflow at {uri}: run {run_id} not found ({exc})") from exc
    for done, op in enumerate(ops):
        try:
            _apply(client, op)
        except Exception as exc:
            if not _answers(uri, timeout_s):
                return _keep(settings, uri, "eval", run_id, ops[done:])
            raise ExternalServiceError(
                f"MLflow at {uri}: cannot log evaluation to run {run_id} ({exc})"
            ) from exc
    return None


def _keep(settings: Settings, uri: str, prefix: str, run_id: str | None, ops: list[dict[str, Any]]) -> Path:
    journal = PendingJournal(settings.tracking.pending_dir, _journal_key(prefix, run_id), uri)
    for op in ops:
        if "path" in op:  # eval's files live in a temporary folder; replay sends only the journal's own
            op = {**op, "path": journal.keep_file(op["path"])}
        journal.add(op)
    return journal.path


def check_registry_names(name: str, aliases: tuple[str, ...] = ()) -> None:
    """MLflow's own rules for a registered model's name and aliases, applied before any work,
    so a bad name is a usage error at once, not a failure after the model is written."""
    from facekp_cli.errors import UsageError

    if not name.strip():
        raise UsageError("--register needs a model name; got an empty one")
    from mlflow.exceptions import MlflowException
    from mlflow.utils import validation

    checks = [(f"--register {name!r}", validation._validate_model_name, name)]
    for alias in aliases:
        checks += [
            (f"--alias {alias!r}", validation._validate_model_alias_name, alias),
            (f"--alias {alias!r}", validation._validate_model_alias_name_reserved, alias),
        ]
    for flag, check, value in checks:
        try:
            check(value)
        except MlflowException as exc:
            message = " ".join(str(exc.message).split())  # one line
            raise UsageError(f"{flag}: {message}") from exc


def register_model(
    settings: Settings, path: Path, name: str, meta: Any, fmt: str, aliases: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Log an exported model file as an MLflow Model (python_function flavour) and register it.

    The Model goes into the training run recorded in the checkpoint (else a new 'export' run) and
    becomes a new version of `name`; each alias (e.g. champion) then points at that version. The
    registry needs a database-backed store (sqlite:///..., or a server started with one). When the
    server does not answer, the registration is kept in a journal (returned as "pending") for
    `facekp tracking sync`.
    """
    uri, timeout_s = resolve_uri(settings), settings.tracking.timeout_s
    op = {
        "op": "register", "run_id": getattr(meta, "mlflow_run_id", None), "path": str(path), "name": name,
        "fmt": fmt, "data_hash": str(getattr(meta, "data_hash", None)),
        "experiment": settings.tracking.experiment, "aliases": list(aliases),
    }  # fmt: skip
    pending = {"name": name, "version": None, "uri": uri}
    if not _answers(uri, timeout_s):
        return {**pending, "pending": str(_keep(settings, uri, "export", op["run_id"], [op]))}
    client = _client(uri, timeout_s)
    try:
        return _register(client, uri, settings.tracking.experiment, path, name, meta, fmt, aliases)
    except Exception as exc:
        if not _answers(uri, timeout_s):
            return {**pending, "pending": str(_keep(settings, uri, "export", op["run_id"], [op]))}
        if isinstance(exc, ExternalServiceError):
            raise
        raise ExternalServiceError(
            f"MLflow at {uri}: cannot register model '{name}' ({str(exc).splitlines()[0]})",
            hint="the model registry needs a database-backed store such as sqlite:///mlflow.db",
        ) from exc


def _register(
    client, uri: str, experiment_name: str, path: Path, name: str, meta: Any, fmt: str, aliases=()
) -> dict[str, Any]:
    run_id = _run_for_model(client, experiment_name, uri, getattr(meta, "mlflow_run_id", None), name)
    logged = log_pyfunc_model(uri, run_id, path, meta, fmt, register_as=name)
    version = logged["version"]
    tags = {"format": fmt, "data_hash": str(getattr(meta, "data_hash", None))}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    for alias in aliases:
        client.set_registered_model_alias(name, alias, version)
    return {
        "name": name,
        "version": str(version),
        "model_uri": f"models:/{name}/{version}",
        "aliases": list(aliases),
        "run_id": run_id,
        "source": logged["model_uri"],
        "uri": uri,
    }


def _run_for_model(client, experiment_name: str, uri: str, run_id: str | None, name: str) -> str:
    if run_id:
        try:
            client.get_run(run_id)
            return run_id
        except Exception:
            pass  # the checkpoint came from another tracking store
    experiment = _experiment_id(client, experiment_name, uri)
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
