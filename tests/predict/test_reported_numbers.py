"""Issue 17: every figure facekp prints about a model, recomputed with numpy from the files it wrote.

`facekp infer` writes the predictions; the reference below (test_eval.reference_metrics, straight
from docs/DESIGN.md, not facekp_cli.metrics) scores them against gt.csv. `facekp eval`, the export
verification and the int8 report must print the same numbers for the same model and images.
The tiny set's images are 4x the 40 px input, so infer decodes them at reduced scale: a report
that decoded them another way would print an NME no `eval` or `infer` repeats.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_eval import reference_metrics
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.data.format import read_gt_csv
from facekp_cli.keypoints import NAMES


def invoke(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def written_predictions(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names, (N, 14, 2) points and (N, 2) sizes from a predictions JSON file, read as plain JSON."""
    images = json.loads(path.read_text())["images"]
    points = [[[e["points"][n]["x"], e["points"][n]["y"]] for n in NAMES] for e in images]
    sizes = [[e["width"], e["height"]] for e in images]
    return [e["name"] for e in images], np.array(points, np.float64), np.array(sizes, np.float64)


def numpy_scores(pred_file: Path, split: Path, count: int | None = None, skip: int = 0) -> dict[str, float]:
    """Scores of the images skip .. skip + count of gt.csv's order, from the written predictions."""
    names, gt = read_gt_csv(split / "gt.csv")
    got, pred, sizes = written_predictions(pred_file)
    by_name = dict(zip(got, range(len(got)), strict=True))
    end = None if count is None else skip + count
    rows = [by_name[n] for n in names[skip:end]]
    truth = gt[skip : skip + len(rows)].astype(np.float64)
    scores = reference_metrics(pred[rows], truth, sizes[rows])
    errors = (
        np.linalg.norm(pred[rows] - truth, axis=-1)
        / np.linalg.norm(truth[:, 4] - truth[:, 9], axis=-1)[:, None]
    )
    scores["per_point_nme"] = (np.nanmean(errors, axis=0) * 100).tolist()
    return scores


def test_eval_of_a_checkpoint_is_numpy_over_infers_written_predictions(
    facekp_checkpoint, tiny_dataset, tmp_path
):
    split = tiny_dataset / "test"
    names = read_gt_csv(split / "gt.csv")[0]
    pred_json, pred_csv = tmp_path / "p.json", tmp_path / "p.csv"
    summary = invoke("infer", split / "images", "--ckpt", facekp_checkpoint, "-o", pred_json, "--no-detect")
    invoke("-q", "infer", split / "images", "--ckpt", facekp_checkpoint, "-o", pred_csv, "--no-detect")
    assert f": {len(names)} images in" in summary  # the summary line counts what was written
    report = json.loads(invoke("eval", "--ckpt", facekp_checkpoint, "--data", split, "--json"))
    expected = numpy_scores(pred_json, split)
    for key in ("mse100", "nme", "fr10", "auc10", "pck05", "pck10"):
        tolerance = 2e-3 if key == "auc10" else 1e-3  # written points carry 4 decimals; CED on a grid
        assert report["metrics"][key] == pytest.approx(expected[key], abs=tolerance), key
    assert list(report["metrics"]["per_point_nme"].values()) == pytest.approx(
        expected["per_point_nme"], abs=1e-3
    )
    assert report["images"] == len(names)
    # The CSV holds the same points as the JSON, and image sizes are the files' own.
    csv_names, csv_points = read_gt_csv(pred_csv)
    json_names, json_points, sizes = written_predictions(pred_json)
    assert csv_names == json_names == names
    assert np.abs(csv_points - json_points).max() < 1e-3
    assert sizes.tolist() == [list(Image.open(split / "images" / n).size) for n in names]
    # The mean-shape row: the layout stored in the checkpoint, scaled to each image.
    import torch

    layout = np.array(torch.load(facekp_checkpoint, weights_only=True)["facekp"]["mean_shape"])
    baseline = reference_metrics(layout[None] * sizes[:, None, :], read_gt_csv(split / "gt.csv")[1], sizes)
    for key in ("mse100", "nme", "fr10"):
        assert report["baseline"][key] == pytest.approx(baseline[key], abs=1e-4), key


def test_export_verification_and_int8_report_are_numpy_over_the_written_models(
    facekp_checkpoint, tiny_dataset, tmp_path
):
    split = tiny_dataset / "test"
    models = {"torch": facekp_checkpoint, "fp32": tmp_path / "m.onnx", "int8": tmp_path / "m.int8.onnx"}
    export = ["export", "--ckpt", facekp_checkpoint, "--data", split, "--json", "-o"]
    check = json.loads(invoke(*export, models["fp32"]))["verification"]
    quant = json.loads(invoke(*export, models["int8"], "--quantize", "int8"))["quantization"]
    # int8 is judged on the images after its calibration half (issue 18 item 13)
    cut, held = quant["calibration_images"], quant["heldout_images"]
    nme, held_nme = {}, {}
    for name, model in models.items():
        pred = tmp_path / f"{name}.json"
        invoke(
            "-q",
            "infer",
            split / "images",
            "--ckpt" if name == "torch" else "--model",
            model,
            "-o",
            pred,
            "--no-detect",
        )
        nme[name] = numpy_scores(pred, split, check["images"])["nme"]
        held_nme[name] = numpy_scores(pred, split, held, skip=cut)["nme"]
    assert check["nme_torch"] == pytest.approx(nme["torch"], abs=1e-3)
    assert check["nme_export"] == pytest.approx(nme["fp32"], abs=1e-3)
    assert check["nme_change"] == pytest.approx(check["nme_export"] - check["nme_torch"], abs=1e-9)
    assert quant["fp32_nme"] == pytest.approx(held_nme["fp32"], abs=1e-3)
    assert quant["int8_nme"] == pytest.approx(held_nme["int8"], abs=1e-3)
    assert quant["nme_change"] == pytest.approx(quant["int8_nme"] - quant["fp32_nme"], abs=1e-9)
