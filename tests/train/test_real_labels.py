"""Datasets as real ones come: one split folder (images/ + gt.csv), points outside the frame.

The last test runs every verb on the real faces in ../shared/realdata/facepoints; it skips with a
reason where that folder is absent (a user's fresh clone), and runs in CI, which has it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.data.datamodule import KeypointDataModule
from facekp_cli.data.format import read_gt_csv, write_gt_csv
from facekp_cli.model import resolve
from facekp_cli.services import train as service

REAL_FACES = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "facepoints"
runner = CliRunner()


@pytest.fixture
def single_split(tiny_dataset, tmp_path) -> Path:
    """tiny_dataset's train/ as a dataset of its own; image 0's mouth lies above the frame."""
    split = shutil.copytree(tiny_dataset / "train", tmp_path / "faces")
    names, points = read_gt_csv(split / "gt.csv")
    points[0, 11:14, 1] = -3.0
    points[1, 12] = (-400.0, -400.0)  # far outside: kept as a label, masked out of the loss
    write_gt_csv(split / "gt.csv", names, points)
    return split


def test_training_on_a_single_split_uses_points_outside_the_frame_as_targets(single_split, tiny_settings):
    settings = tiny_settings(
        **{"data.root": single_split, "tracking.enabled": False, "augment.enabled": False}
    )
    datamodule = KeypointDataModule(settings)
    datamodule.setup("fit")
    assert len(datamodule.train_indices) + len(datamodule.val_indices) == 36
    train = datamodule.dataset("train")
    by_row = {int(row): position for position, row in enumerate(train.indices)}
    for row in (0, 1):
        if row in by_row:
            item = train[by_row[row]]
            if row == 0:  # 3 px above a 32 px-ish frame: a target, below -1
                assert item["mask"][11:14].all() and (item["target"][11:14, 1] < -1).all()
            else:  # hundreds of pixels away: beyond keep_margin, not a target
                assert not item["mask"][12] and item["mask"][11]
    result = service.run(settings)
    assert result.stable_best_path.is_file() and np.isfinite(result.metrics["val_nme"])


def test_eval_scores_points_outside_the_frame(single_split, tiny_settings, tmp_path):
    settings = tiny_settings(**{"data.root": single_split, "tracking.enabled": False})
    ckpt = service.run(settings).stable_best_path
    report_path = tmp_path / "report.json"
    result = runner.invoke(
        app, ["eval", "--ckpt", str(ckpt), "--data", str(single_split), "-o", str(report_path)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["images"] == 36 and np.isfinite(report["metrics"]["mse100"])


@pytest.mark.skipif(not REAL_FACES.is_dir(), reason=f"real faces not present at {REAL_FACES} (a fresh clone)")
def test_every_verb_runs_on_the_real_faces_as_they_are(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real = str(REAL_FACES)
    validated = runner.invoke(app, ["data", "validate", real, "--json"])
    assert validated.exit_code == 0, validated.output
    report = json.loads(validated.stdout)
    assert report["errors"] == 0 and report["splits"][0]["rows"] == 5398
    assert any(i["kind"] == "outside-frame" and "01483.jpg" in i["message"] for i in report["issues"])
    shown = runner.invoke(app, ["data", "show", real, "--n", "4", "--augment", "--out", "grid.png"])
    assert shown.exit_code == 0, shown.output
    tiny = ["--set", "model.input_size=32", "--set", "model.width=8", "--set", "train.batch_size=128"]
    trained = runner.invoke(app, [*tiny, "train", "--data", real, "--epochs", "1", "--no-tracking"])
    assert trained.exit_code == 0, trained.output
    evaluated = runner.invoke(app, ["eval", "--ckpt", "best.ckpt", "--data", real, "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout)["metrics"]
    assert metrics["images"] == 5398 and np.isfinite(metrics["mse100"])
    exported = runner.invoke(app, ["export", "--ckpt", "best.ckpt", "--data", real, "--out", "m.onnx"])
    assert exported.exit_code == 0, exported.output
    images = tmp_path / "few"
    images.mkdir()
    for name in sorted((REAL_FACES / "images").iterdir())[:20]:
        shutil.copy(name, images / name.name)
    inferred = runner.invoke(
        app, ["infer", "--no-detect", str(images), "--model", "m.onnx", "--out", "p.json"]
    )
    assert inferred.exit_code == 0, inferred.output
    assert len(json.loads((tmp_path / "p.json").read_text())["images"]) == 20


def test_init_from_starts_a_run_from_another_checkpoints_weights(tiny_settings, tmp_path):
    from facekp_cli.errors import UsageError
    from facekp_cli.model.checkpoint import load_checkpoint
    from facekp_cli.model.resnet import ResNet18
    from facekp_cli.services.train import start_from_weights

    first = service.run(tiny_settings(**{"tracking.enabled": False})).stable_best_path
    loaded = load_checkpoint(first)
    source, size = loaded.model.state_dict(), loaded.meta.preprocessing.input_size
    network = ResNet18(3, 14, width=8)
    start_from_weights(network, first, size)
    assert all((network.state_dict()[k] == v).all() for k, v in source.items())
    said = []
    resolve.set_notice(said.append)
    try:
        with pytest.raises(UsageError, match="does not fit this run's model settings"):
            start_from_weights(ResNet18(3, 14, width=16), first, size * 2)  # the error alone, no warning
        start_from_weights(ResNet18(3, 14, width=8), first, size * 2)
    finally:
        resolve.set_notice(None)
    assert said == [
        f"facekp: warning: {first}: its weights were trained at {size} px, this run uses "
        f"model.input_size={size * 2}; fine-tuning works best at --set model.input_size={size}"
    ]
    tuned = service.run(
        tiny_settings(
            **{"tracking.enabled": False, "train.init_from": first, "train.best_path": tmp_path / "b.ckpt"}
        )
    )
    assert tuned.stable_best_path.is_file()
