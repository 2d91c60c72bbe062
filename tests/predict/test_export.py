"""`facekp export`: ONNX/TorchScript that match PyTorch, verification, int8, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.errors import ExitCode
from facekp_cli.keypoints import FLIP_INDEX, NAMES


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def onnx_model(tiny_dataset, facekp_checkpoint, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    result = invoke("export", "--ckpt", facekp_checkpoint, "--data", tiny_dataset, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_onnx_export_is_verified_and_carries_metadata(onnx_model, tiny_dataset):
    import onnx
    import onnxruntime as ort

    path, report = onnx_model
    check = report["verification"]
    assert check["passed"] and check["images"] == 12 and check["data"] == str(tiny_dataset / "test")
    assert 0 <= check["mean_px"] <= check["max_px"] <= 0.05
    assert abs(check["nme_change"]) < 0.01
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["facekp.keypoint_names"].split(",") == list(NAMES)
    assert [int(i) for i in props["facekp.flip_index"].split(",")] == list(FLIP_INDEX)
    assert props["facekp.input_size"] == "40" and props["facekp.in_channels"] == "3"
    assert props["facekp.data_hash"] == "0123456789abcdef0123456789abcdef.dir"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str)  # dynamic batch axis
    for batch in (1, 5):
        out = session.run(None, {"image": np.zeros((batch, 3, 40, 40), np.float32)})[0]
        assert out.shape == (batch, 14, 2)


def test_onnx_and_torch_infer_agree(onnx_model, facekp_checkpoint, tiny_dataset, tmp_path):
    from facekp_cli.data.format import read_gt_csv

    images = tiny_dataset / "test" / "images"
    a, b = tmp_path / "torch.csv", tmp_path / "onnx.csv"
    assert invoke("-q", "infer", "--no-detect", images, "--ckpt", facekp_checkpoint, "-o", a).exit_code == 0
    result = invoke(
        "-q", "infer", "--no-detect", images, "--model", onnx_model[0], "-o", b, "--batch-size", 5
    )
    assert result.exit_code == 0, result.output
    (names_a, pa), (names_b, pb) = read_gt_csv(a), read_gt_csv(b)
    assert names_a == names_b and len(names_a) == 12
    assert np.linalg.norm(pa - pb, axis=-1).max() < 0.05


def test_fp16_weights_halve_the_onnx_file_and_pass_verification(
    onnx_model, facekp_checkpoint, tiny_dataset, tmp_path
):
    import onnx

    out = tmp_path / "half.onnx"
    flags = ["--set", "export.fp16_weights=true", "export", "--ckpt", facekp_checkpoint]
    result = invoke(*flags, "--data", tiny_dataset, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verification"]["passed"]
    assert out.stat().st_size < 0.6 * onnx_model[0].stat().st_size
    graph = onnx.load(str(out)).graph
    halves = [i for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert halves and sum(n.op_type == "Cast" for n in graph.node) >= len(halves)
    refused = invoke(*flags, "--quantize", "int8", "--data", tiny_dataset, "--out", tmp_path / "q.onnx")
    assert refused.exit_code == ExitCode.USAGE and "fp16_weights" in refused.stderr
    assert not (tmp_path / "q.onnx").exists()


def test_torchscript_export_round_trips_through_infer(facekp_checkpoint, tiny_dataset, tmp_path):
    out = tmp_path / "model.pt"
    args = ("--ckpt", facekp_checkpoint, "-f", "torchscript", "--data", tiny_dataset, "-o", out)
    result = invoke("export", *args)
    assert result.exit_code == 0, result.output
    assert "passed" in result.stdout
    preds = tmp_path / "p.json"
    assert (
        invoke(
            "-q", "infer", "--no-detect", tiny_dataset / "test" / "images", "--model", out, "-o", preds
        ).exit_code
        == 0
    )
    payload = json.loads(preds.read_text())
    assert payload["model"]["kind"] == "torchscript" and len(payload["images"]) == 12


def test_failed_verification_keeps_the_previous_file(facekp_checkpoint, tiny_dataset, tmp_path, monkeypatch):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous export")
    monkeypatch.setenv("FACEKP_EXPORT__TOLERANCE_PX", "1e-12")  # no real export is that exact
    result = invoke("export", "--ckpt", facekp_checkpoint, "--data", tiny_dataset, "-o", out)
    assert result.exit_code == ExitCode.FAILURE
    assert "tolerance" in result.stderr and "nothing was written" in result.stderr
    assert out.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_export_in_an_empty_folder_verifies_on_generated_pictures(facekp_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no faces_data here
    result = invoke("export", "--ckpt", facekp_checkpoint, "-o", tmp_path / "m.onnx", "--json")
    assert result.exit_code == 0, result.output
    check = json.loads(result.stdout)["verification"]
    assert check["passed"] and check["images"] == 32 and "generated on the spot" in check["data"]
    assert check["nme_torch"] > 0 and abs(check["nme_change"]) < 0.01  # the generator labels them
    skipped = invoke("export", "--ckpt", facekp_checkpoint, "-o", tmp_path / "m.onnx", "--no-verify")
    assert skipped.exit_code == 0 and "skipped" in skipped.stdout


def test_export_verifies_on_unlabelled_images(facekp_checkpoint, tiny_dataset, tmp_path):
    import shutil

    pictures = tmp_path / "pictures"
    shutil.copytree(tiny_dataset / "test" / "images", pictures)  # images only, no gt.csv
    result = invoke("export", "--ckpt", facekp_checkpoint, "--data", pictures, "-o", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output
    assert "n/a (unlabelled images)" in result.stdout and "passed" in result.stdout
    args = ("--ckpt", facekp_checkpoint, "--data", pictures, "-o", tmp_path / "m.onnx", "--json")
    report = invoke("export", *args)
    check = json.loads(report.stdout)["verification"]
    assert check["images"] == 12 and check["nme_torch"] is None and check["data"] == str(pictures)


def test_export_with_data_that_has_no_images_is_a_clear_error(facekp_checkpoint, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("export", "--ckpt", facekp_checkpoint, "--data", empty, "-o", tmp_path / "m.onnx")
    assert result.exit_code == ExitCode.DATA
    assert str(empty) in result.stderr and "no images for export verification" in result.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_int8_quantization_reports_speed_and_accuracy(facekp_checkpoint, tiny_dataset, tmp_path):
    out = tmp_path / "model.int8.onnx"
    args = ("export", "--ckpt", facekp_checkpoint, "--data", tiny_dataset, "-o", out, "--quantize", "int8")
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    quant = json.loads(result.stdout)["quantization"]
    assert quant["int8_bytes"] < quant["fp32_bytes"] / 2
    assert quant["fp32_images_per_s"] > 0 and quant["int8_images_per_s"] > 0
    assert quant["int8_nme"] == pytest.approx(quant["fp32_nme"] + quant["nme_change"])
    assert quant["tolerance_nme"] == 1.0 and quant["passed"]
    import onnx

    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    preds = tmp_path / "p.json"
    assert (
        invoke(
            "-q", "infer", "--no-detect", tiny_dataset / "test" / "images", "--model", out, "-o", preds
        ).exit_code
        == 0
    )


def test_int8_is_judged_on_images_it_was_not_calibrated_on_without_onnxruntime_info_lines(
    facekp_checkpoint, tiny_dataset, tmp_path
):
    """Calibrated and judged on the same 32 images, int8 looked lossless ("NME -0.000"); and the
    quantizer printed a "INFO root: Created a copy of bias" line per shared bias (flip test)."""
    import subprocess
    import sys

    import torch

    checkpoint = torch.load(facekp_checkpoint, map_location="cpu", weights_only=True)
    checkpoint["facekp"]["flip_test"] = True  # the flipped branch shares biases: the quantizer copies them
    flip = tmp_path / "flip.ckpt"
    torch.save(checkpoint, flip)
    out = tmp_path / "flip.int8.onnx"
    facekp = str(Path(sys.executable).with_name("facekp"))
    args = ["export", "--ckpt", flip, "--data", tiny_dataset, "-o", out, "--quantize", "int8", "--json"]
    proc = subprocess.run(
        [facekp, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "Created a copy of bias" not in proc.stderr and "INFO" not in proc.stderr, proc.stderr
    quant = json.loads(proc.stdout)["quantization"]
    test_images = len(list((tiny_dataset / "test" / "images").iterdir()))  # 12: half each
    assert quant["calibration_images"] == quant["heldout_images"] == test_images // 2
    assert quant["data"] == str(tiny_dataset / "test")
    shown = invoke("export", "--ckpt", flip, "--data", tiny_dataset, "-o", out, "--quantize", "int8")
    assert "measured on 6 other images from" in " ".join(shown.stdout.split())
    assert "(not used for calibration)" in " ".join(shown.stdout.split())


def test_the_onnxruntime_filter_drops_its_info_but_keeps_its_warnings(caplog):
    import logging

    from facekp_cli.services import export as service

    where = "/venv/site-packages/onnxruntime/quantization/base_quantizer.py"
    caplog.set_level(logging.INFO)
    with service._quiet_onnxruntime_info():
        for level, path in ((logging.INFO, where), (logging.WARNING, where), (logging.INFO, "/app/mine.py")):
            logging.getLogger().handle(logging.LogRecord("root", level, path, 1, "m", None, None))
    assert [(r.levelname, r.pathname) for r in caplog.records] == [
        ("WARNING", where),
        ("INFO", "/app/mine.py"),
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--register", ""], "--register needs a model name; got an empty one"),
        (["--register", "team/model"], "Names cannot contain '/' or ':'"),
        (["--register", ".."], "must not resolve to other names"),
        (["--register", "ok", "--alias", "latest"], "'latest' alias name (case insensitive) is reserved"),
        (["--register", "ok", "--alias", "bad alias"], "--alias 'bad alias': Invalid alias name"),
    ],
    ids=["empty", "slash", "dot-dot", "reserved alias", "bad alias"],
)
def test_bad_registry_names_are_usage_errors_before_any_work(facekp_checkpoint, tmp_path, flags, message):
    """`--register ""` exited 0 having registered nothing; other bad names failed with exit 5
    after the model had been written."""
    out = tmp_path / "m.onnx"
    result = invoke("export", "--ckpt", facekp_checkpoint, "-o", out, "--no-verify", *flags)
    assert result.exit_code == ExitCode.USAGE, result.output
    (line,) = result.stderr.strip().splitlines()
    assert message in line and line.startswith("facekp: error: ")
    assert not out.exists()


def test_eval_scores_the_exported_model_like_the_checkpoint(onnx_model, facekp_checkpoint, tiny_dataset):
    data = tiny_dataset / "test"
    exported = invoke("eval", "--model", onnx_model[0], "--data", data, "--json")
    original = invoke("eval", "--ckpt", facekp_checkpoint, "--data", data, "--json")
    assert exported.exit_code == 0 and original.exit_code == 0, exported.output + original.output
    a, b = json.loads(exported.stdout), json.loads(original.stdout)
    assert a["source"]["kind"] == "onnx"
    assert a["baseline"]["source"] == "training mean shape stored in the model"
    assert a["metrics"]["nme"] == pytest.approx(b["metrics"]["nme"], abs=1e-4)
    assert a["baseline"]["nme"] == pytest.approx(b["baseline"]["nme"], abs=1e-9)
