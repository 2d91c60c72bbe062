"""Replaying journalled tracking calls into the server, in order, losing none."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from facekp_cli.errors import ExternalServiceError
from facekp_cli.experiments.client import check_reachable, open_client
from facekp_cli.experiments.journal import JournalContents, read_journal
from facekp_cli.experiments.registry import register_version

log = logging.getLogger(__name__)


def apply_call(client, op: dict[str, Any]) -> None:
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
        register_version(
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
        client = open_client(target, timeout_s)
        try:
            for op in ops:
                apply_call(client, {**op, "uri": target})
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
