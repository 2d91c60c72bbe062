"""Tiny training settings, a real MLflow server on loopback, and helpers to read MLflow runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from train_helpers import free_port, tiny_overrides

from facekp_cli.settings import Settings, load_settings

VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def tiny_settings(tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Builds Settings for a tiny run in tmp_path (cwd too, so no conf.toml or env leaks in)."""
    monkeypatch.chdir(tmp_path)

    def build(**extra) -> Settings:
        return load_settings(overrides=tiny_overrides(tiny_dataset, tmp_path, **extra), environ={})

    return build


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
