"""Real services the fault tests start, kill and restart: an MLflow server and moto's S3 server,
each a separate process on a fixed loopback port (so a restart comes back at the same address)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, process: subprocess.Popen, log: Path, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            kill_hard(process)  # the whole group: a server's workers must not outlive the test
            raise RuntimeError(f"{url} did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.3)


def start_mlflow(home: Path, port: int) -> subprocess.Popen:
    """`mlflow server` with a SQLite store and proxied artifacts under `home` (kept across restarts)."""
    home.mkdir(parents=True, exist_ok=True)
    log = home / f"server-{time.monotonic_ns()}.log"
    with open(log, "wb") as out:
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
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MLFLOW_TRACKING_URI": ""},
            start_new_session=True,  # its workers die with it when the group is killed
        )
    _wait_http(f"http://127.0.0.1:{port}/health", process, log)
    return process


def start_moto(home: Path, port: int) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    log = home / f"moto-{time.monotonic_ns()}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _wait_http(f"http://127.0.0.1:{port}/moto-api/", process, log)
    return process


def stop(process: subprocess.Popen, seconds: float = 10) -> None:
    """SIGTERM to the whole group (a clean shutdown), SIGKILL if it has not ended in `seconds`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        kill_hard(process)


def kill_hard(process: subprocess.Popen) -> None:
    """SIGKILL the process and its whole group (a server's workers too): no clean shutdown."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)
