"""The project's dvc.yaml, run by DVC itself on a tiny configuration in a temporary git repository:
a full `dvc repro`, a second one with nothing to do, a parameter change that invalidates exactly
train (and, through its output, eval and export), and `dvc exp run -S` / `dvc exp show`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TINY_CONF = """\
# a tiny configuration: 32 px, width 8, one epoch
[data]
root = "faces_data"
num_workers = 0
val_fraction = 0.25

[model]
input_size = 32
width = 8

[augment]
# enabled = true

[train]
epochs = 1
batch_size = 8
lr = 0.003
accelerator = "cpu"
devices = "1"

[tracking]
enabled = false

[infer]
num_workers = 0

[eval]
worst_n = 2

[export]
verify_images = 4                    # images compared with PyTorch
"""
STAGES = ("data", "train", "eval", "export")


def _run(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",  # stages call `facekp`
        "OMP_NUM_THREADS": "1",
        "DVC_NO_ANALYTICS": "1",
    }
    done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _ran(output: str) -> set[str]:
    return {stage for stage in STAGES if f"Running stage '{stage}'" in output}


@pytest.fixture()
def pipeline_repo(tmp_path):
    repo = tmp_path / "project"
    repo.mkdir()
    _run(repo, "git", "init", "-q")
    _run(repo, "git", "config", "user.name", "facekp test")
    _run(repo, "git", "config", "user.email", "test@facekp.invalid")
    _run(repo, str(VENV_BIN / "dvc"), "init", "-q")
    shutil.copy(PROJECT / "dvc.yaml", repo / "dvc.yaml")
    (repo / "conf.toml").write_text(TINY_CONF)
    (repo / ".gitignore").write_text("/runs/\n/mlflow.db\n")
    _run(repo, str(VENV_BIN / "facekp"), "data", "synth", "--n", "16")
    _run(repo, str(VENV_BIN / "dvc"), "add", "-q", "faces_data")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "tiny facekp project")
    return repo


@pytest.mark.slow
def test_pipeline_repro_is_incremental_and_experiments_change_parameters(pipeline_repo):
    repo, dvc = pipeline_repo, str(VENV_BIN / "dvc")
    first = _run(repo, dvc, "repro")
    assert _ran(first) == set(STAGES)
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert metrics["images"] == 2 and metrics["nme"] > 0 and metrics["baseline_nme"] > 0
    assert (repo / "models" / "best.ckpt").is_file() and (repo / "models" / "model.onnx").is_file()
    assert json.loads((repo / "reports" / "export.json").read_text())["verification"]["passed"]
    for plot in ("ced.png", "per_point_nme.png"):
        assert (repo / "reports" / "plots" / plot).read_bytes()[:4] == b"\x89PNG"

    second = _run(repo, dvc, "repro")
    assert _ran(second) == set() and "Data and pipelines are up to date" in second

    # A changed learning rate invalidates train only; eval and export follow from its new output.
    conf = repo / "conf.toml"
    conf.write_text(TINY_CONF.replace("lr = 0.003", "lr = 0.001"))
    changed = json.loads(_run(repo, dvc, "status", "--json").splitlines()[-1])
    assert set(changed) == {"train"}, changed
    conf.write_text(TINY_CONF)
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "pipeline results")

    experiment = _run(repo, dvc, "exp", "run", "-S", "conf.toml:train.epochs=2", "-n", "two-epochs")
    assert _ran(experiment) == {"train", "eval", "export"}
    assert "Stage 'data' didn't change" in experiment
    assert "# images compared with PyTorch" in conf.read_text()  # DVC keeps the file's comments

    rows = json.loads(_run(repo, dvc, "exp", "show", "--json").strip().splitlines()[-1])
    experiments = {
        exp["name"]: exp["data"]
        for row in rows
        for group in row.get("experiments") or []
        for exp in group.get("revs") or []
    }
    assert "two-epochs" in experiments, rows
    data = experiments["two-epochs"]
    assert data["params"]["conf.toml"]["data"]["train"]["epochs"] == 2
    assert data["metrics"]["reports/metrics.json"]["data"]["nme"] > 0
    baseline = next(row for row in rows if row.get("experiments"))  # the commit the experiment started from
    assert baseline["data"]["params"]["conf.toml"]["data"]["train"]["epochs"] == 1
