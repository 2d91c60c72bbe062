"""A real MLflow server SIGKILLed under `facekp train`, then absent for `facekp eval --mlflow-run` and
`facekp export --register`: every command finishes with one warning line, its calls are kept in a
journal under tracking.pending_dir, and once the server is back (same store, same address) nothing
is missing: either training sends them itself at the next epoch end, or `facekp tracking sync` does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from live_services import free_port, kill_hard, start_mlflow

FACEKP = str(Path(sys.executable).with_name("facekp"))
EPOCHS = 6
LONG_EPOCHS = 40  # long enough to outlast a server restart on a busy 2-core machine

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACEKP_", "MLFLOW_"))}
    return {**env, "OMP_NUM_THREADS": "1", "COLUMNS": "250"}


def _tiny_flags(data: Path, work: Path, uri: str) -> list[str]:
    values = {
        "data.root": data, "data.num_workers": 0, "model.input_size": 32, "model.width": 8,
        "train.batch_size": 8, "train.out_dir": work / "runs", "train.best_path": work / "best.ckpt",
        "train.accelerator": "cpu", "train.devices": "1", "train.early_stop_patience": 0,
        "tracking.uri": uri, "tracking.pending_dir": work / "pending", "tracking.timeout_s": 10,
    }  # fmt: skip
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def _wait_for(condition, proc: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"facekp ended (rc {proc.returncode}) too early:\n{proc.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning" in line.lower()]


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _only_run(uri: str):
    client = _client(uri)
    runs = client.search_runs([client.get_experiment_by_name("facekp").experiment_id])
    assert len(runs) == 1
    return runs[0]


def _steps(uri: str, run_id: str, key: str) -> list[int]:
    return sorted({m.step for m in _client(uri).get_metric_history(run_id, key)})


def _artifacts(uri: str, run_id: str) -> set[str]:
    client, paths, folders = _client(uri), set(), [None]
    while folders:
        for item in client.list_artifacts(run_id, folders.pop()):
            (folders.append(item.path) if item.is_dir else paths.add(item.path))
    return paths


def test_server_killed_mid_training_then_sync_after_eval_and_export(tmp_path, tiny_dataset):
    home, port = tmp_path / "server", free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow(home, port)
    flags = _tiny_flags(tiny_dataset, tmp_path, uri)
    train = subprocess.Popen(
        [FACEKP, "-q", *flags, "train", "--epochs", str(EPOCHS), "--run-name", "cut"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for((tmp_path / "runs" / "cut" / "last.ckpt").exists, train)  # epoch 0 is done
    finally:
        kill_hard(server)
    _, err = train.communicate(timeout=600)

    # Training finished and kept everything locally, with one warning line.
    assert train.returncode == 0, err[-3000:]
    assert (tmp_path / "best.ckpt").is_file() and (tmp_path / "runs" / "cut" / "last.ckpt").is_file()
    assert len(_warnings(err)) == 1 and "facekp tracking sync" in err and "Traceback" not in err, err
    journals = sorted((tmp_path / "pending").glob("*.jsonl"))
    assert len(journals) == 1
    kept = [json.loads(line) for line in journals[0].read_text().splitlines()]
    run_id = kept[0]["run_id"]
    assert {op["op"] for op in kept} >= {"metrics", "artifact", "terminate"}
    assert kept[-1] == {**kept[-1], "op": "terminate", "status": "FINISHED"}

    # The server is still down: eval and export --register finish too, each with one warning.
    test_split = tiny_dataset / "test"
    evaluated = subprocess.run(
        [FACEKP, *flags, "eval", "--ckpt", "best.ckpt", "--data", str(test_split), "--mlflow-run", run_id],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert len(_warnings(evaluated.stderr)) == 1 and "facekp tracking sync" in evaluated.stderr
    exported = subprocess.run(
        [FACEKP, *flags, "export", "--ckpt", "best.ckpt", "--out", "tiny.onnx", "--data", str(test_split),
         "--register", "facekp-tiny"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert len(_warnings(exported.stderr)) == 1 and "facekp tracking sync" in exported.stderr
    assert (tmp_path / "tiny.onnx").is_file()
    assert len(list((tmp_path / "pending").glob("*.jsonl"))) == 3

    # Still down: sync fails with exit 5 and keeps every journal.
    early = subprocess.run([FACEKP, *flags, "tracking", "sync"], cwd=tmp_path, env=_env(),
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert early.returncode == 5 and "unreachable" in early.stderr
    assert len(list((tmp_path / "pending").glob("*.jsonl"))) == 3

    # Back at the same address with the same store: sync sends everything, once.
    server = start_mlflow(home, port)
    try:
        synced = subprocess.run([FACEKP, *flags, "tracking", "sync"], cwd=tmp_path, env=_env(),
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert synced.returncode == 0, synced.stderr[-3000:]
        assert list((tmp_path / "pending").glob("*.jsonl")) == []
        run = _only_run(uri)
        assert run.info.run_id == run_id and run.info.status == "FINISHED"
        for key in ("val_nme", "val_loss", "train_loss"):
            assert _steps(uri, run_id, key) == list(range(EPOCHS)), key
        assert "training.epochs" not in run.data.params and run.data.params["train.epochs"] == str(EPOCHS)
        assert run.data.metrics["eval_nme"] > 0
        artifacts = _artifacts(uri, run_id)
        assert {"config.json", "checkpoints/best.ckpt", "lr_curve.png", "eval/eval_report.json"} <= artifacts
        (version,) = _client(uri).search_model_versions("name='facekp-tiny'")
        assert version.run_id == run_id and version.tags["format"] == "onnx"
    finally:
        kill_hard(server)


def test_server_back_during_training_gets_the_kept_calls_without_a_sync(tmp_path, tiny_dataset):
    home, port = tmp_path / "server", free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow(home, port)
    flags = _tiny_flags(tiny_dataset, tmp_path, uri)
    train = subprocess.Popen(
        [FACEKP, "-q", *flags, "train", "--epochs", str(LONG_EPOCHS), "--run-name", "blip"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for((tmp_path / "runs" / "blip" / "last.ckpt").exists, train)
        kill_hard(server)
        _wait_for(lambda: any((tmp_path / "pending").glob("*.jsonl")), train)
        # Frozen while the server restarts (which takes longer than a tiny run on an idle machine),
        # so the server is surely back before training's next epoch end.
        train.send_signal(signal.SIGSTOP)
    finally:
        server = start_mlflow(home, port)
        train.send_signal(signal.SIGCONT)
    assert train.poll() is None, "training ended before the server was back; raise LONG_EPOCHS"
    try:
        _, err = train.communicate(timeout=600)
        assert train.returncode == 0, err[-3000:]
        assert len(_warnings(err)) == 1, err
        assert list((tmp_path / "pending").glob("*.jsonl")) == []  # sent at an epoch end, not left behind
        run = _only_run(uri)
        assert run.info.status == "FINISHED"
        assert _steps(uri, run.info.run_id, "val_nme") == list(range(LONG_EPOCHS))
    finally:
        kill_hard(server)
