"""The whole loop through the CLI: train -> export (+ registry) -> infer -> eval (+ MLflow logging)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facekp_cli.cli.main import app


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_train_export_infer_eval(tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    db = tmp_path / "mlflow.db"
    conf = tmp_path / "conf.toml"
    conf.write_text(
        f"""
[data]
root = "{tiny_dataset}"
num_workers = 0
[model]
input_size = 32
width = 8
[train]
epochs = 2
batch_size = 8
accelerator = "cpu"
devices = "1"
[tracking]
uri = "sqlite:///{db}"
[infer]
num_workers = 1
"""
    )
    trained = invoke("-c", conf, "train")
    assert trained.exit_code == 0, trained.output
    assert Path("best.ckpt").is_file()

    exported = invoke("-c", conf, "export", "--register", "facekp-e2e", "--json")
    assert exported.exit_code == 0, exported.output
    report = json.loads(exported.stdout)
    assert report["verification"]["passed"] and report["registered"]["version"] == "1"

    preds = tmp_path / "preds.csv"
    inferred = invoke(
        "-c",
        conf,
        "-q",
        "infer",
        "--no-detect",
        tiny_dataset / "test" / "images",
        "--model",
        "best.onnx",
        "-o",
        preds,
    )
    assert inferred.exit_code == 0, inferred.output

    gt = tiny_dataset / "test" / "gt.csv"
    from_csv = invoke("-c", conf, "eval", "--pred", preds, "--gt", gt, "--json")
    from_ckpt = invoke("-c", conf, "eval", "--json")  # best.ckpt on data.root/test, logged to its run
    assert from_csv.exit_code == 0 and from_ckpt.exit_code == 0, from_csv.output + from_ckpt.output
    a, b = json.loads(from_csv.stdout), json.loads(from_ckpt.stdout)
    assert a["metrics"]["nme"] == pytest.approx(b["metrics"]["nme"], abs=1e-3)
    assert b["baseline"]["source"] == "training mean shape stored in the model"
    assert np.isfinite(b["metrics"]["mse100"])

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    run_id = b["mlflow_run_id"]
    assert run_id and report["registered"]["run_id"] == run_id
    run = client.get_run(run_id)
    assert run.data.metrics["eval_nme"] == pytest.approx(b["metrics"]["nme"])
    assert "eval_baseline_nme" in run.data.metrics
    logged = {f.path for f in client.list_artifacts(run_id, "eval")}
    assert {"eval/ced.png", "eval/per_point_nme.png", "eval/eval_report.json"} <= logged
    version = client.get_model_version("facekp-e2e", "1")
    assert version.run_id == run_id and version.source.startswith("models:/")  # an MLflow Model
    assert version.tags["format"] == "onnx"
