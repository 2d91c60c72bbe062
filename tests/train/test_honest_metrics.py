"""Issue 17: what training reports about its best checkpoint is what `facekp eval` measures.

Every run here is a real tiny training run on the synthetic set the tests make. The validation
images are rebuilt outside facekp's training code, by `benchmarks/real_split.py` (the split every
real-face figure uses), and scored with `facekp eval` of the saved best checkpoint. The printed
summary, the MLflow metric of the best epoch and the checkpoint's own metadata must all repeat
that figure: with EMA's averaged weights swapped in for validation, with test-time flip
averaging, with either head, and with two DDP processes whose sampler pads the last round.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow_probe import metric_steps, mlflow_runs
from train_helpers import tiny_overrides
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.data.datamodule import KeypointDataModule
from facekp_cli.data.format import read_gt_csv
from facekp_cli.model.checkpoint import FACEKP_KEY
from facekp_cli.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
FACEKP = str(Path(sys.executable).parent / "facekp")
REAL_FACES = Path(os.environ.get("REAL_FACES_DIR") or REPO.parent / "shared" / "realdata" / "facepoints")
TOLERANCE = 1e-3  # NME in percent and MSE100; eval decodes from disk, training reads its cache
REPORTED = {"val_nme": "nme", "val_mse100": "mse100", "val_fr10": "fr10"}
runner = CliRunner()


def _real_split():
    spec = importlib.util.spec_from_file_location("real_split", REPO / "benchmarks" / "real_split.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def held_out(train_split: Path, out: Path, val_fraction: float = 0.1, seed: int = 0) -> Path:
    """The images `facekp train --data <train_split>` validates on, as a split folder of their own,
    built by benchmarks/real_split.py (not by the training code)."""
    count = len(read_gt_csv(train_split / "gt.csv")[0])
    _real_split().make_split(train_split, out, max(1, round(count * val_fraction)), seed)
    return out / "test"


def flags(values: dict) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def evaluate(ckpt: Path, split: Path, tmp_path: Path) -> dict:
    report = tmp_path / f"eval-{ckpt.stem}.json"
    done = runner.invoke(app, ["eval", "--ckpt", str(ckpt), "--data", str(split), "--out", str(report)])
    assert done.exit_code == 0, done.output
    return json.loads(report.read_text())["metrics"]


def printed_metrics(output: str) -> dict[str, tuple[float, float]]:
    """The summary table's figures, each with half a unit of its last printed digit."""
    found = {}
    assert "Training done" in output, output
    summary = output.split("Training done", 1)[1]  # not the per-epoch progress lines above it
    for key, label in (("val_nme", r"NME \(%\)"), ("val_mse100", "MSE100")):
        match = re.search(label + r"\W+([0-9.]+)", summary)
        assert match, output
        text = match.group(1)
        decimals = len(text.partition(".")[2])
        found[key] = (float(text), 0.5 * 10.0**-decimals)
    return found


def assert_matches(reported: dict[str, float], evaluated: dict, where: str) -> None:
    for key, name in REPORTED.items():
        assert reported[key] == pytest.approx(evaluated[name], abs=TOLERANCE), (
            f"{where}: {key} {reported[key]} but eval of the saved checkpoint gives {evaluated[name]}"
        )


def assert_training_reports_what_eval_measures(output: str, work: Path, val_split: Path) -> None:
    """The best checkpoint (printed, logged, in its metadata) and the last one (logged, metadata):
    a fault that only sets in late must not hide behind an earlier best epoch."""
    uri = f"sqlite:///{work / 'mlflow.db'}"
    (run,) = mlflow_runs(uri)
    (last,) = (work / "runs").glob("*/last.ckpt")
    for ckpt in (work / "best.ckpt", last):
        evaluated = evaluate(ckpt, val_split, work)
        assert evaluated["images"] == len(read_gt_csv(val_split / "gt.csv")[0])
        meta = torch.load(ckpt, map_location="cpu", weights_only=True)[FACEKP_KEY]
        assert_matches(meta["metrics"], evaluated, f"{ckpt.name} metadata, epoch {meta['epoch']}")
        logged = {key: dict(metric_steps(uri, run.info.run_id, key))[meta["epoch"] - 1] for key in REPORTED}
        assert_matches(logged, evaluated, f"MLflow, epoch {meta['epoch']}")
        if ckpt.name == "best.ckpt":
            for key, (value, rounding) in printed_metrics(output).items():
                assert abs(value - evaluated[REPORTED[key]]) <= rounding + TOLERANCE, (key, value, evaluated)


@pytest.mark.parametrize("head", ["regression", "integral"])
@pytest.mark.parametrize("flip_test", [True, False], ids=["flip", "noflip"])
@pytest.mark.parametrize("ema_decay", [0.995, 0.0], ids=["ema", "noema"])
def test_best_epochs_reported_metrics_equal_eval_of_the_saved_checkpoint(
    tiny_dataset, tmp_path, monkeypatch, ema_decay, flip_test, head
):
    monkeypatch.chdir(tmp_path)
    # Batches of 2: 48 optimizer steps, so EMA's weight average is updated often enough for the
    # issue-17 fault to show (the averaged flip map drifted after ~30 updates).
    extra = {"train.ema_decay": ema_decay, "model.flip_test": flip_test, "model.head": head}
    values = tiny_overrides(tiny_dataset, tmp_path, **{**extra, "train.batch_size": 2})
    del values["data.root"], values["train.epochs"]
    trained = runner.invoke(
        app, [*flags(values), "train", "--data", str(tiny_dataset), "--epochs", "3"], env={"COLUMNS": "200"}
    )
    assert trained.exit_code == 0, trained.output
    val_split = held_out(tiny_dataset / "train", tmp_path / "split")
    assert_training_reports_what_eval_measures(trained.output, tmp_path, val_split)


@pytest.mark.slow
def test_ddp_reports_each_validation_image_once(tiny_dataset, tmp_path):
    """Two gloo processes, 5 validation images: the sampler gives each rank 3, repeating one."""
    values = tiny_overrides(tiny_dataset, tmp_path, **{"data.val_fraction": 0.15, "train.epochs": 1})
    del values["data.root"], values["train.devices"]
    args = [FACEKP, *flags(values), "train", "--data", str(tiny_dataset)]
    args += ["--devices", "2", "--strategy", "ddp"]
    done = subprocess.run(
        args, cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    val_split = held_out(tiny_dataset / "train", tmp_path / "split", val_fraction=0.15)
    assert len(read_gt_csv(val_split / "gt.csv")[0]) == 5
    assert_training_reports_what_eval_measures(done.stdout, tmp_path, val_split)


def test_tunes_best_value_is_eval_of_that_trials_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    import optuna

    monkeypatch.chdir(tmp_path)
    values = tiny_overrides(tiny_dataset, tmp_path)
    del values["data.root"], values["train.epochs"], values["train.best_path"]
    args = [*flags(values), "tune", "--data", str(tiny_dataset), "--epochs", "2", "--n-trials", "2"]
    args += ["--param", "train.lr=0.001..0.01:log", "--param", "model.head=regression,integral"]
    done = runner.invoke(app, [*args, "--no-tracking", "--out", str(tmp_path / "best.toml")])
    assert done.exit_code == 0, done.output
    study = optuna.load_study(study_name="facekp", storage=f"sqlite:///{tmp_path / 'runs' / 'tune.db'}")
    val_split = held_out(tiny_dataset / "train", tmp_path / "split")
    for trial in study.trials:  # every trial's value, so also the best one's
        evaluated = evaluate(Path(trial.user_attrs["checkpoint"]), val_split, tmp_path)
        assert trial.value == pytest.approx(evaluated["nme"], abs=TOLERANCE), trial.number
    assert f"{study.best_value:.4f}" in (tmp_path / "best.toml").read_text()


def test_real_split_holds_out_the_images_training_validates_on(tiny_dataset, tmp_path):
    settings = load_settings(overrides={"data.root": tiny_dataset}, environ={})
    datamodule = KeypointDataModule(settings)
    datamodule.setup()
    validated = [datamodule.split.filenames[i] for i in datamodule.val_indices]
    assert read_gt_csv(held_out(tiny_dataset / "train", tmp_path / "split") / "gt.csv")[0] == validated


@pytest.mark.skipif(not REAL_FACES.is_dir(), reason=f"real faces not present at {REAL_FACES} (a fresh clone)")
def test_the_540_real_faces_of_real_split_are_trainings_validation_faces(tmp_path):
    """docs/bench/real.md scores every real-face figure on these 540 (issue 17)."""
    settings = load_settings(overrides={"data.root": REAL_FACES}, environ={})
    datamodule = KeypointDataModule(settings)
    datamodule.setup()
    validated = [datamodule.split.filenames[i] for i in datamodule.val_indices]
    names, points = read_gt_csv(_real_split_test(tmp_path) / "gt.csv")
    assert len(validated) == 540 and names == validated
    assert np.array_equal(points, datamodule.split.keypoints[datamodule.val_indices], equal_nan=True)


def _real_split_test(tmp_path: Path) -> Path:
    _real_split().make_split(REAL_FACES, tmp_path / "real", 540, 0)
    return tmp_path / "real" / "test"
