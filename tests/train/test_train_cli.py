"""`facekp train` from the command line: in-process (CliRunner) and as two DDP processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow_probe import mlflow_runs
from train_helpers import tiny_overrides
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.errors import ExitCode

FACEKP = str(Path(sys.executable).parent / "facekp")


def _set_flags(root: Path, work: Path, **extra) -> list[str]:
    flags = []
    for key, value in tiny_overrides(root, work, **extra).items():
        if not key.startswith(("data.root", "train.epochs", "train.batch_size")):
            flags += ["--set", f"{key}={value}"]
    return flags


def test_cli_trains_and_prints_the_best_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*_set_flags(tiny_dataset, tmp_path), "train", "--data", str(tiny_dataset)]
    args += ["--epochs", "1", "--batch-size", "8", "--no-tracking", "--run-name", "cli", "--seed", "3"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Best checkpoint: " in result.output and str(Path("runs") / "cli" / "best.ckpt") in result.output
    assert "facekp eval --ckpt" in result.output and "NME" in result.output
    assert (tmp_path / "best.ckpt").is_file()
    assert not (tmp_path / "mlflow.db").exists()


def test_cli_maps_an_unreachable_server_to_the_external_exit_code(tiny_dataset, tmp_path, monkeypatch):
    from train_helpers import free_port

    monkeypatch.chdir(tmp_path)
    uri = f"http://127.0.0.1:{free_port()}"
    args = [*_set_flags(tiny_dataset, tmp_path, **{"tracking.uri": uri, "tracking.timeout_s": 1}), "train"]
    result = CliRunner().invoke(app, [*args, "--data", str(tiny_dataset)])
    assert result.exit_code == ExitCode.EXTERNAL
    assert "unreachable" in result.output and uri in result.output


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_makes_one_run_and_one_set_of_checkpoints(tiny_dataset, tmp_path):
    args = [FACEKP, *_set_flags(tiny_dataset, tmp_path), "train", "--data", str(tiny_dataset)]
    args += [
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
    ]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert "val_nme" in runs[0].data.metrics
    (run_dir,) = (tmp_path / "runs").iterdir()  # both ranks used rank 0's folder
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert done.stdout.count("Best checkpoint:") == 1  # only rank 0 reports
