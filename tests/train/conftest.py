"""Tiny training settings, a real MLflow server on loopback, and helpers to read MLflow runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import free_port, tiny_overrides

from facekp_cli.settings import Settings, load_settings


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
    from tests.reliability.live_services import start_mlflow, stop

    home = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    process = start_mlflow(home, port)
    yield f"http://127.0.0.1:{port}"
    stop(process)
