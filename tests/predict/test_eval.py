"""`facekp eval`: its numbers against an independent computation from docs/DESIGN.md's definitions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.data.format import read_gt_csv, write_gt_csv


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def reference_metrics(pred: np.ndarray, gt: np.ndarray, sizes: np.ndarray) -> dict[str, float]:
    """Straight from docs/DESIGN.md, image by image, without facekp_cli.metrics."""
    mse, nme, normalised = [], [], []
    for p, g, (w, h) in zip(pred.astype(np.float64), gt.astype(np.float64), sizes, strict=True):
        labelled = ~np.isnan(g[:, 0])
        dx = (p[labelled, 0] - g[labelled, 0]) * 100.0 / w
        dy = (p[labelled, 1] - g[labelled, 1]) * 100.0 / h
        mse.append(np.mean(np.concatenate([dx, dy]) ** 2))
        iod = np.hypot(*(g[4] - g[9]))  # points 5 and 10, the outer eye corners
        errors = np.hypot(*(p[labelled] - g[labelled]).T) / iod
        nme.append(errors.mean())
        normalised.extend(errors)
    nme, normalised = np.array(nme), np.array(normalised)
    return {
        "mse100": float(np.mean(mse)),
        "nme": float(nme.mean() * 100),
        # NME, FR and PCK in percent, AUC a fraction of 1: the units of every facekp output
        "fr10": float(np.mean(nme > 0.10) * 100),
        # area under the step CDF of NME on [0, 0.1], over 0.1 = mean of (1 - nme/0.1) clipped at 0
        "auc10": float(np.mean(np.clip(1.0 - nme / 0.10, 0.0, None))),
        "pck05": float(np.mean(normalised < 0.05) * 100),
        "pck10": float(np.mean(normalised < 0.10) * 100),
    }


@pytest.fixture()
def scored_split(tiny_dataset: Path, tmp_path: Path):
    """Test labels with some points hidden, and predictions = truth + known noise, as gt.csv files."""
    names, gt = read_gt_csv(tiny_dataset / "test" / "gt.csv")
    gt = gt.copy()
    gt[0, 2] = np.nan  # an unlabelled point must be skipped everywhere
    gt[1, 11:] = np.nan
    rng = np.random.default_rng(7)
    iod = np.linalg.norm(gt[:, 4] - gt[:, 9], axis=-1)
    pred = gt + rng.normal(size=gt.shape) * iod[:, None, None] * rng.uniform(0.01, 0.12, (len(gt), 1, 1))
    pred = np.nan_to_num(pred, nan=5.0).clip(0)
    split = tmp_path / "split"
    split.mkdir()
    (split / "images").symlink_to(tiny_dataset / "test" / "images")
    write_gt_csv(split / "gt.csv", names, gt)
    write_gt_csv(tmp_path / "pred.csv", names, pred)
    sizes = np.array([Image.open(split / "images" / n).size for n in names], np.float64)
    # the written CSV rounds to 4 decimals: compare against what was written
    written_pred, written_gt = read_gt_csv(tmp_path / "pred.csv")[1], read_gt_csv(split / "gt.csv")[1]
    return split, tmp_path / "pred.csv", written_pred, written_gt, sizes


def test_eval_numbers_equal_an_independent_computation(scored_split, tmp_path):
    split, pred_csv, pred, gt, sizes = scored_split
    report, plots = tmp_path / "report.json", tmp_path / "plots"
    result = invoke("eval", "--pred", pred_csv, "--gt", split / "gt.csv", "--out", report, "--plots", plots)
    assert result.exit_code == 0, result.output
    assert "MSE100" in result.stdout and "mean shape" in result.stdout
    payload = json.loads(report.read_text())
    expected = reference_metrics(pred, gt, sizes)
    for key, value in expected.items():
        tolerance = 2e-3 if key == "auc10" else 1e-9  # facekp integrates the CED on a 1001-step grid
        assert payload["metrics"][key] == pytest.approx(value, rel=1e-9, abs=tolerance), key
    assert payload["images"] == len(gt)
    errors = np.linalg.norm(pred - gt, axis=-1) / np.linalg.norm(gt[:, 4] - gt[:, 9], axis=-1)[:, None]
    per_point = np.nanmean(errors, axis=0) * 100
    assert list(payload["metrics"]["per_point_nme"].values()) == pytest.approx(per_point.tolist())
    # no train/ split beside these labels: the baseline comes from the labels themselves, and says so
    assert "labels themselves" in payload["baseline"]["source"]
    layout = np.nanmean(gt / sizes[:, None, :], axis=0)
    baseline = reference_metrics(layout[None] * sizes[:, None, :], gt, sizes)
    assert payload["baseline"]["nme"] == pytest.approx(baseline["nme"], rel=1e-5)
    assert payload["baseline"]["mse100"] == pytest.approx(baseline["mse100"], rel=1e-5)
    # the worst images are the highest-NME ones, drawn; the plots are real PNGs
    worst_expected = np.argsort(-np.nanmean(errors, axis=1))[:8]
    assert [w["filename"] for w in payload["worst"]] == [split_name(split, i) for i in worst_expected]
    for path in [*payload["plots"].values(), *(w["drawing"] for w in payload["worst"])]:
        assert Path(path).read_bytes()[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb")
        assert Image.open(path).size[0] > 50


def test_every_output_gives_a_metric_in_the_same_unit(scored_split, tmp_path):
    """FR and PCK were fractions in report.json but percent in the table (NME percent in both)."""
    split, pred_csv, pred, gt, sizes = scored_split
    report, flat = tmp_path / "report.json", tmp_path / "metrics.json"
    result = invoke("eval", "--pred", pred_csv, "--gt", split / "gt.csv", "--out", report, "--metrics", flat)
    assert result.exit_code == 0, result.output
    payload, numbers = json.loads(report.read_text())["metrics"], json.loads(flat.read_text())
    expected = reference_metrics(pred, gt, sizes)
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in result.stdout.splitlines()
            if line.count("│") >= 4}  # fmt: skip
    for key, label in (("nme", "NME (%)"), ("fr10", "FR@0.10 (%)"), ("pck05", "PCK@0.05 (%)"),
                       ("pck10", "PCK@0.10 (%)")):  # fmt: skip
        assert expected[key] > 1.0 or key == "fr10"  # percent, not a fraction (fr10 may be 0 here)
        assert payload[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-9), key
        assert numbers[key] == pytest.approx(expected[key], abs=1e-5), key
        assert float(rows[label]) == pytest.approx(expected[key], abs=0.006), label


def split_name(split: Path, index: int) -> str:
    return read_gt_csv(split / "gt.csv")[0][index]


def test_eval_uses_the_train_split_beside_the_labels_for_the_baseline(tiny_dataset, tmp_path):
    names, gt = read_gt_csv(tiny_dataset / "test" / "gt.csv")
    write_gt_csv(tmp_path / "pred.csv", names, gt)  # perfect predictions
    gt_csv = tiny_dataset / "test" / "gt.csv"
    result = invoke("eval", "--pred", tmp_path / "pred.csv", "--gt", gt_csv, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["metrics"]["nme"] == pytest.approx(0.0, abs=1e-3)
    assert payload["metrics"]["auc10"] > 0.99
    assert "train split" in payload["baseline"]["source"]
    train_names, train_gt = read_gt_csv(tiny_dataset / "train" / "gt.csv")
    train_images = tiny_dataset / "train" / "images"
    train_sizes = np.array([Image.open(train_images / n).size for n in train_names], float)
    layout = np.nanmean(train_gt / train_sizes[:, None, :], axis=0)
    sizes = np.array([Image.open(tiny_dataset / "test" / "images" / n).size for n in names], float)
    expected = reference_metrics(layout[None] * sizes[:, None, :], gt, sizes)
    assert payload["baseline"]["nme"] == pytest.approx(expected["nme"], rel=1e-5)


def test_eval_rejects_predictions_that_miss_images(tiny_dataset, tmp_path):
    names, gt = read_gt_csv(tiny_dataset / "test" / "gt.csv")
    write_gt_csv(tmp_path / "pred.csv", names[1:], gt[1:])
    result = invoke("eval", "--pred", tmp_path / "pred.csv", "--gt", tiny_dataset / "test" / "gt.csv")
    assert result.exit_code == 3 and names[0] in result.stderr


def test_a_missing_checkpoint_run_is_a_warning_but_an_explicit_one_an_error(
    facekp_checkpoint, tiny_dataset, tmp_path, monkeypatch
):
    import torch

    checkpoint = torch.load(facekp_checkpoint, weights_only=True)
    checkpoint["facekp"]["mlflow_run_id"] = "0123456789abcdef0123456789abcdef"
    torch.save(checkpoint, tmp_path / "tracked.ckpt")
    monkeypatch.setenv("FACEKP_TRACKING__URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data = tiny_dataset / "test"
    implicit = invoke("eval", "--ckpt", tmp_path / "tracked.ckpt", "--data", data, "--json")
    assert implicit.exit_code == 0, implicit.output
    assert "warning: not logged to the checkpoint's MLflow run" in implicit.stderr
    assert json.loads(implicit.stdout)["mlflow_run_id"] is None
    explicit = invoke("eval", "--ckpt", tmp_path / "tracked.ckpt", "--data", data, "--mlflow-run", "feed")
    assert explicit.exit_code == 5 and "feed" in explicit.stderr
