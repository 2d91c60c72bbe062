"""Tiny training settings, a real MLflow server on loopback, and helpers to read MLflow runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from facekp_cli.settings import Settings, load_settings

VENV_BIN = Path(sys.executable).parent


def tiny_overrides(root: Path, work: Path, **extra) -> dict:
    """A 32 px, width-8 network on the tiny set: about a second per epoch on 2 cores."""
    values = {
        "data.root": root,
        "data.num_workers": 0,
        "model.input_size": 32,
        "model.width": 8,
        "train.epochs": 2,
        "train.batch_size": 8,
        "train.out_dir": work / "runs",
        "train.best_path": work / "best.ckpt",
        "train.accelerator": "cpu",
        "train.devices": "1",
        "tracking.uri": f"sqlite:///{work / 'mlflow.db'}",
    }
    values.update(extra)
    return values


@pytest.fixture
def tiny_settings(tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Builds Settings for a tiny run in tmp_path (cwd too, so no conf.toml or env leaks in)."""
    monkeypatch.chdir(tmp_path)

    def build(**extra) -> Settings:
        return load_settings(overrides=tiny_overrides(tiny_dataset, tmp_path, **extra), environ={})

    return build


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real `mlflow server` on 127.0.0.1 with a SQLite store and proxied artifacts."""
    home = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    log = open(home / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [
            str(VENV_BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{home / 'mlflow.db'}",
            "--artifacts-destination",
            str(home / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"mlflow server did not start: {(home / 'server.log').read_text()[-2000:]}")
        time.sleep(0.3)
    yield uri
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
