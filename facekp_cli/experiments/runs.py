"""Runs outside training: eval logging into a training run, Optuna parent and trial runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facekp_cli.errors import ExternalServiceError
from facekp_cli.experiments.client import (
    check_reachable,
    experiment_id_for,
    now_ms,
    open_client,
    resolve_uri,
    server_answers,
)
from facekp_cli.experiments.journal import keep_calls
from facekp_cli.experiments.replay import apply_call
from facekp_cli.settings import Settings


def log_evaluation(
    settings: Settings, run_id: str, metrics: dict[str, float], files: list[Path]
) -> Path | None:
    """Log eval metrics and files (report, plots, worst images) into an existing run, under eval/.

    Returns None when logged; when the server does not answer, the journal the calls were kept
    in (sent later by `facekp tracking sync`). A run the server says it does not have is an error.
    """
    uri, timeout_s = resolve_uri(settings), settings.tracking.timeout_s
    stamp = now_ms()
    ops: list[dict[str, Any]] = [
        {"op": "metrics", "run_id": run_id, "metrics": [[k, float(v), stamp, 0] for k, v in metrics.items()]}
    ]
    for path in files:
        sub = "eval/worst" if Path(path).parent.name == "worst" else "eval"
        ops.append({"op": "artifact", "run_id": run_id, "path": str(path), "artifact_path": sub})
    if not server_answers(uri, timeout_s):
        return keep_calls(settings, uri, "eval", run_id, ops)
    client = open_client(uri, timeout_s)
    try:
        client.get_run(run_id)
    except Exception as exc:
        if not server_answers(uri, timeout_s):
            return keep_calls(settings, uri, "eval", run_id, ops)
        raise ExternalServiceError(f"MLflow at {uri}: run {run_id} not found ({exc})") from exc
    for done, op in enumerate(ops):
        try:
            apply_call(client, op)
        except Exception as exc:
            if not server_answers(uri, timeout_s):
                return keep_calls(settings, uri, "eval", run_id, ops[done:])
            raise ExternalServiceError(
                f"MLflow at {uri}: cannot log evaluation to run {run_id} ({exc})"
            ) from exc
    return None


def start_parent_run(settings: Settings, name: str, tags: dict[str, str], run_id: str | None = None) -> str:
    """Open (or reopen, for a resumed study) the run that groups a study's trials as its children."""
    from mlflow.entities import RunStatus

    uri = resolve_uri(settings)
    check_reachable(uri, settings.tracking.timeout_s)
    client = open_client(uri)
    try:
        if run_id:
            client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            return run_id
        experiment = experiment_id_for(client, settings.tracking.experiment, uri)
        return client.create_run(experiment, run_name=name, tags=tags).info.run_id
    except Exception as exc:
        raise ExternalServiceError(f"MLflow at {uri}: cannot start the run '{name}' ({exc})") from exc


def finish_parent_run(
    settings: Settings, run_id: str, params: dict[str, Any], metrics: dict[str, float], status: str
) -> None:
    """Log the study's best parameters and value into its parent run and close it."""
    from mlflow.entities import Metric, Param

    uri = resolve_uri(settings)
    client = open_client(uri)
    try:
        stamp = now_ms()
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
    client = open_client(resolve_uri(settings))
    query = f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.`facekp.tune.trial` = '{trial_tag}'"
    experiment = experiment_id_for(client, settings.tracking.experiment, resolve_uri(settings))
    for run in client.search_runs([experiment], filter_string=query):
        for key, value in tags.items():
            client.set_tag(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id, status)
