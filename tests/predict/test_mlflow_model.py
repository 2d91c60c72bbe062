"""`facekp export --register NAME`: an MLflow Model (python_function) that wraps facekp's predictor,
loaded through the registry and served over HTTP by `mlflow models serve` on loopback."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.keypoints import NAMES

MODEL = "facekp-pyfunc"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def registered(facekp_checkpoint, tiny_dataset, tmp_path_factory):
    """A checkpoint exported to ONNX and registered as version 1 of MODEL with alias champion."""
    folder = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    old = os.environ.get("FACEKP_TRACKING__URI")
    os.environ["FACEKP_TRACKING__URI"] = uri
    try:
        args = ("--ckpt", facekp_checkpoint, "--data", tiny_dataset, "-o", folder / "model.onnx")
        result = invoke("export", *args, "--register", MODEL, "--alias", "champion", "--json")
    finally:
        if old is None:
            os.environ.pop("FACEKP_TRACKING__URI")
        else:
            os.environ["FACEKP_TRACKING__URI"] = old
    assert result.exit_code == 0, result.output
    return uri, json.loads(result.stdout), folder / "model.onnx"


def _onnx_points(model_path: Path, images: list[Path]) -> np.ndarray:
    """The same images through facekp's own ONNX predictor, in pixels (the reference)."""
    from facekp_cli.data.images import decode_image
    from facekp_cli.frame import normalised_to_points, prepare_image
    from facekp_cli.predict.backends import onnx_predictor

    predictor = onnx_predictor(model_path)
    decoded = [decode_image(p) for p in images]
    batch = np.stack([prepare_image(d, predictor.meta.preprocessing) for d in decoded])
    widths = np.array([d.shape[1] for d in decoded], float)
    heights = np.array([d.shape[0] for d in decoded], float)
    return normalised_to_points(predictor.predict(batch), widths, heights)


def test_registered_version_is_a_pyfunc_model_with_signature_and_alias(registered):
    from mlflow.models import get_model_info
    from mlflow.tracking import MlflowClient

    uri, report, _ = registered
    reg = report["registered"]
    assert reg["name"] == MODEL and reg["version"] == "1" and reg["model_uri"] == f"models:/{MODEL}/1"
    assert reg["aliases"] == ["champion"]
    client = MlflowClient(uri)
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    version = client.get_model_version(MODEL, "1")
    assert version.tags["format"] == "onnx" and version.current_stage == "None"  # aliases, not stages
    import mlflow

    mlflow.set_tracking_uri(uri)
    info = get_model_info(f"models:/{MODEL}/1")
    assert "python_function" in info.flavors
    assert info.signature.inputs.input_names() == ["image"]
    assert info.signature.outputs.input_names()[:2] == [f"{NAMES[0]}_x", f"{NAMES[0]}_y"]
    assert info.saved_input_example_info is not None


def test_pyfunc_predicts_named_points_from_paths_bytes_and_base64(registered, tiny_dataset):
    import mlflow
    import pandas as pd

    uri, _, onnx_path = registered
    images = sorted((tiny_dataset / "test" / "images").iterdir())[:3]
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    values = [str(images[0]), images[1].read_bytes(), base64.b64encode(images[2].read_bytes()).decode()]
    frame = model.predict(pd.DataFrame({"image": values}))
    assert list(frame.columns) == [f"{n}_{a}" for n in NAMES for a in ("x", "y")] and len(frame) == 3
    expected = _onnx_points(onnx_path, images).reshape(3, -1)
    assert np.abs(frame.to_numpy() - expected).max() < 1e-3
    with pytest.raises(Exception, match="row 0"):
        model.predict(pd.DataFrame({"image": [base64.b64encode(b"not an image").decode()]}))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_over_http(registered, tiny_dataset, tmp_path):
    uri, _, onnx_path = registered
    port = _free_port()
    mlflow_cli = shutil.which("mlflow", path=str(Path(sys.executable).parent))
    assert mlflow_cli, "the mlflow command is installed beside this Python"
    bin_dir = str(Path(sys.executable).parent)  # the server runs `uvicorn` from PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    command = [mlflow_cli, "models", "serve", "-m", f"models:/{MODEL}/1", "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(1)
        images = sorted((tiny_dataset / "test" / "images").iterdir())[:2]
        rows = [[base64.b64encode(p.read_bytes()).decode()] for p in images]
        body = json.dumps({"dataframe_split": {"columns": ["image"], "data": rows}}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            predictions = json.loads(answer.read())["predictions"]
        assert len(predictions) == 2 and set(predictions[0]) == {f"{n}_{a}" for n in NAMES for a in "xy"}
        served = np.array([[row[f"{n}_{a}"] for n in NAMES for a in "xy"] for row in predictions])
        assert np.abs(served - _onnx_points(onnx_path, images).reshape(2, -1)).max() < 1e-3
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
