"""The MLflow client: which store (tracking.uri), whether it answers.

The only modules that talk to MLflow are in facekp_cli/experiments/ (docs/DESIGN.md)."""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from facekp_cli.errors import ExternalServiceError
from facekp_cli.settings import Settings

DEFAULT_URI = "sqlite:///mlflow.db"


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


def open_client(uri: str, timeout_s: float = 5.0):
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


def experiment_id_for(client, name: str, uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location, store = None, sqlite_store(uri)
    if store is not None:  # keep artifacts beside the database, not in whatever cwd is
        location = (store.resolve().parent / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def now_ms() -> int:
    import time

    return int(time.time() * 1000)


# --- evaluation and model registry (used by `facekp eval` and `facekp export --register`) ---
def server_answers(uri: str, timeout_s: float) -> bool:
    try:
        check_reachable(uri, timeout_s)
    except ExternalServiceError:
        return False
    return True
