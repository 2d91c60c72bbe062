"""Nothing lost: Ctrl-C (a real SIGINT to a `facekp` process) in the middle of infer, export and train.

infer and export leave the previous output byte for byte and no temporary file; train leaves a
resumable last.ckpt, ends its MLflow run KILLED (never RUNNING), and `--resume` finishes the run
without losing the epochs already done. (tests/train/test_train_service.py covers the same
interruption in-process, raised from a callback; here the signal comes from outside.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner
from untrained_checkpoint import write_untrained_checkpoint

from facekp_cli.cli.main import app
from facekp_cli.errors import ExitCode

FACEKP = str(Path(sys.executable).with_name("facekp"))


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FACEKP_")}


def interrupt_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120) -> None:
    """Send SIGINT as soon as `ready()` holds; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(
                f"process ended (rc {proc.returncode}) before it could be interrupted:\n{err[-3000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the moment to interrupt")
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)


def temporaries(folder: Path, name: str) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(f".{name}.") and p.name.endswith(".tmp")]


def ctrl_c_enabled() -> None:
    """In the child before exec: a runner that started us in the background (SIGINT ignored, as a
    shell does for `cmd &`) must not make Ctrl-C a no-op for the process under test."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen([FACEKP, *args], cwd=cwd, env=clean_env(), preexec_fn=ctrl_c_enabled, **pipes)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, err


def test_interrupted_infer_keeps_the_previous_predictions(tmp_path, tiny_checkpoint):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), np.uint8)).save(images / "000.jpg", quality=90)
    for i in range(1, 400):  # hard links: 400 files to decode, written in no time
        os.link(images / "000.jpg", images / f"{i:03d}.jpg")
    out = tmp_path / "preds.json"
    first = CliRunner().invoke(app, ["-q", "infer", "--no-detect", str(images / "000.jpg"),
                                     "--ckpt", str(tiny_checkpoint), "-o", str(out)])  # fmt: skip
    assert first.exit_code == 0, first.output
    previous = out.read_bytes()

    args = [
        "-q",
        "infer",
        "--no-detect",
        "images",
        "--ckpt",
        str(tiny_checkpoint),
        "-o",
        "preds.json",
        "-b",
        "1",
        "-j",
        "0",
    ]
    proc = start(args, tmp_path)
    # interrupt once the new file is being written: its temporary holds flushed entries
    interrupt_when(proc, lambda: any(p.stat().st_size > 0 for p in temporaries(tmp_path, "preds.json")))
    code, err = finish(proc)
    assert code == ExitCode.INTERRUPTED, err
    assert err.strip().splitlines()[-1] == "facekp: interrupted"
    assert "Traceback" not in err
    assert out.read_bytes() == previous
    assert temporaries(tmp_path, "preds.json") == []


@pytest.fixture(scope="module")
def wide_checkpoint(tmp_path_factory) -> Path:
    """A width-32, 64 px checkpoint: big enough that an export takes a moment to interrupt."""
    return write_untrained_checkpoint(tmp_path_factory.mktemp("wide") / "wide.ckpt", input_size=64, width=32)


def test_interrupted_export_keeps_the_previous_model(tmp_path, wide_checkpoint, tiny_dataset):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the previous export, byte for byte")
    previous = out.read_bytes()
    args = ["-q", "export", "--ckpt", str(wide_checkpoint), "-o", "model.onnx", "--data", str(tiny_dataset)]
    proc = start(args, tmp_path)
    interrupt_when(proc, lambda: bool(temporaries(tmp_path, "model.onnx")))
    code, err = finish(proc)
    assert code == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err
    assert out.read_bytes() == previous
    assert temporaries(tmp_path, "model.onnx") == []


def test_interrupted_training_resumes_without_losing_epochs(tmp_path, tiny_dataset):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = {
        "model.input_size": 32, "model.width": 8, "data.num_workers": 0, "train.out_dir": "runs",
        "train.best_path": "best.ckpt", "train.accelerator": "cpu", "train.devices": "1", "tracking.uri": uri,
    }  # fmt: skip
    flags = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    epochs = 4
    train = [*flags, "-q", "train", "--data", str(tiny_dataset)]
    proc = start([*train, "--epochs", str(epochs), "--run-name", "cut", "--batch-size", "8"], tmp_path)
    last = tmp_path / "runs" / "cut" / "last.ckpt"
    interrupt_when(proc, last.is_file)  # the first epoch's checkpoint is there: interrupt the second
    code, err = finish(proc)
    assert code == ExitCode.INTERRUPTED, err
    assert f"resume with: facekp train --resume {Path('runs') / 'cut' / 'last.ckpt'}" in err
    assert "Traceback" not in err

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("facekp").experiment_id])
    assert run.info.status == "KILLED"
    saved = torch.load(last, weights_only=True)
    assert saved["epoch"] >= 0 and saved["optimizer_states"] and "facekp" in saved
    done_before = {m.step for m in client.get_metric_history(run.info.run_id, "val_nme")}
    assert 0 in done_before  # the first epoch finished and was logged

    resumed = subprocess.run(
        [FACEKP, *train, "--resume", str(last)],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (after,) = client.search_runs([client.get_experiment_by_name("facekp").experiment_id])
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_nme")]
    assert set(steps) == set(range(epochs)), steps  # every epoch validated once
    assert done_before <= set(steps)
    final = torch.load(last, weights_only=True)
    assert final["epoch"] == epochs - 1 and final["global_step"] > saved["global_step"]
    assert (tmp_path / "best.ckpt").is_file()
