"""MLflow Models and the model registry (`facekp export --register`, tracking.log_model)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path
from typing import Any

from facekp_cli.errors import ExternalServiceError
from facekp_cli.experiments.client import experiment_id_for, open_client, resolve_uri, server_answers
from facekp_cli.experiments.journal import keep_calls
from facekp_cli.settings import Settings


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
    if not server_answers(uri, timeout_s):
        return {**pending, "pending": str(keep_calls(settings, uri, "export", op["run_id"], [op]))}
    client = open_client(uri, timeout_s)
    try:
        return register_version(client, uri, settings.tracking.experiment, path, name, meta, fmt, aliases)
    except Exception as exc:
        if not server_answers(uri, timeout_s):
            return {**pending, "pending": str(keep_calls(settings, uri, "export", op["run_id"], [op]))}
        if isinstance(exc, ExternalServiceError):
            raise
        raise ExternalServiceError(
            f"MLflow at {uri}: cannot register model '{name}' ({str(exc).splitlines()[0]})",
            hint="the model registry needs a database-backed store such as sqlite:///mlflow.db",
        ) from exc


def register_version(
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
    experiment = experiment_id_for(client, experiment_name, uri)
    run_id = client.create_run(experiment, run_name=f"export-{name}").info.run_id
    client.set_terminated(run_id, "FINISHED")
    return run_id


def log_pyfunc_model(
    uri: str, run_id: str, path: Path, meta: Any, fmt: str, register_as: str | None = None
) -> dict[str, Any]:
    """Log `path` (ONNX or TorchScript) as the artifact of a facekp python_function Model in a run."""
    import importlib.metadata

    import mlflow

    from facekp_cli.experiments import pyfunc

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
