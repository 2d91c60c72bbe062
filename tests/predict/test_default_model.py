"""The default model shipped inside the package, and the one rule that picks which model answers.

Order: --ckpt/--model > train.best_path > the shipped default (facekp_cli/model/resolve.py). Every
verb that runs a model is run here once with no model argument, in a folder with no best.ckpt, on
the real shipped file (a 64-px, width-32 network: a few hundred milliseconds per call).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.model import resolve
from tests.predict.video_clips import REAL_FACES, synthetic_faces, write_clip

SHIPPED = "shipped default"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch):
    """A working folder with no best.ckpt and no conf.toml; FACEKP_* settings cleared."""
    for name in [n for n in os.environ if n.startswith("FACEKP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("FACEKP_TRACKING__ENABLED", "false")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def face_image(tiny_dataset) -> Path:
    # a face crop; its tests pass --no-detect, as the finder misses some synthetic crops (they are
    # about which model answers, not about finding faces: tests/predict/test_auto_detect.py)
    return sorted((tiny_dataset / "test" / "images").iterdir())[0]


def test_the_shipped_file_is_small_synthetic_only_and_records_its_recipe():
    from facekp_cli.data.synth.generator import GENERATOR_VERSION
    from facekp_cli.model.checkpoint import load_checkpoint, read_checkpoint_dict

    path = resolve.default_checkpoint_path()
    assert path.is_file(), f"{path}: run `make default-model`"
    assert path.stat().st_size < 8e6
    assert "site-packages" in str(path) or (Path(__file__).parents[2] / "facekp_cli") in path.parents
    raw = read_checkpoint_dict(path)
    assert set(raw) == {"state_dict", "facekp"}  # weights and metadata only, no optimizer state
    loaded = load_checkpoint(path)
    build = loaded.meta.build_info
    assert build["trained_on"].startswith("facekp data synth output only")
    assert build["generator_version"] == GENERATOR_VERSION
    assert build["data_md5"].endswith(".dir") and build["data_md5"] == loaded.meta.data_hash
    assert build["recipe"]["settings"]["model.input_size"] == loaded.meta.preprocessing.input_size
    assert build["recipe"]["settings"]["model.width"] == loaded.meta.width
    # stored as fp16, computed in fp32 once loaded
    import torch

    stored = {v.dtype for v in raw["state_dict"].values() if v.is_floating_point()}
    assert stored == {torch.float16}
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}


def test_resolution_order_ckpt_then_best_path_then_default(tmp_path, facekp_checkpoint):
    from facekp_cli.settings import load_settings

    said: list[str] = []
    resolve.set_notice(said.append)
    try:
        settings = load_settings(None, overrides={"train.best_path": tmp_path / "best.ckpt"}, environ={})
        chosen = resolve.resolve(settings)
        assert chosen.source == "default" and chosen.ckpt == resolve.default_checkpoint_path()
        shutil.copy(facekp_checkpoint, tmp_path / "best.ckpt")
        assert resolve.resolve(settings).ckpt == tmp_path / "best.ckpt"
        named = resolve.resolve(settings, ckpt=facekp_checkpoint)
        assert (named.ckpt, named.source) == (facekp_checkpoint, "--ckpt")
        exported = resolve.resolve(settings, model=tmp_path / "m.onnx")
        assert (exported.ckpt, exported.model) == (None, tmp_path / "m.onnx")
        assert resolve.resolve(settings, ckpt=Path("default")).is_default  # the word names the shipped one
    finally:
        resolve.set_notice(None)
    # named models (--ckpt PATH, --model) are not announced; best_path and the default are
    assert len(said) == 3 and SHIPPED in said[0] and str(tmp_path / "best.ckpt") in said[1]
    assert SHIPPED in said[2]
    assert all(line.startswith("facekp: model: ") and "\n" not in line for line in said)


def test_the_onnx_twin_is_the_checkpoint_on_the_cpu(tmp_path, tiny_dataset):
    """Same weights, same points: the twin is what CPU inference of the default runs."""
    from facekp_cli.frame import prepare_image
    from facekp_cli.predict.backends import checkpoint_predictor, onnx_predictor
    from facekp_cli.settings import load_settings

    twin = resolve.default_onnx_path()
    assert twin is not None and twin.stat().st_size < 8e6, "run `make default-model`"
    settings = load_settings(None, overrides={"train.best_path": tmp_path / "none.ckpt"}, environ={})
    assert resolve.resolve(settings, device="cpu").model == twin
    assert resolve.resolve(settings, ckpt=Path("default"), device="cpu").model == twin
    # a GPU run, and export (no device), get the checkpoint itself
    assert resolve.resolve(settings, device="cuda").ckpt == resolve.default_checkpoint_path()
    assert resolve.resolve(settings).ckpt == resolve.default_checkpoint_path()
    torch_side = checkpoint_predictor(resolve.default_checkpoint_path())
    onnx_side = onnx_predictor(twin)
    assert onnx_side.meta.keypoint_names == torch_side.meta.keypoint_names
    assert onnx_side.meta.preprocessing == torch_side.meta.preprocessing
    assert onnx_side.meta.data_hash == torch_side.meta.data_hash
    from facekp_cli.data.images import decode_image

    images = sorted((tiny_dataset / "test" / "images").iterdir())[:8]
    batch = np.stack([prepare_image(decode_image(i), torch_side.meta.preprocessing) for i in images])
    size = torch_side.meta.preprocessing.input_size
    gap = np.abs(onnx_side.predict(batch) - torch_side.predict(batch)).max() * size / 2  # in input pixels
    assert gap < 0.05


def test_cpu_inference_of_the_default_does_not_import_torch(empty_cwd, face_image):
    import subprocess
    import sys

    code = "\n".join([
        "import sys",
        "from facekp_cli.cli.main import main",
        "sys.argv = ['facekp', 'infer', sys.argv[1], '-o', 'p.json', '--no-detect']",
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code",
        "print('torch' in sys.modules)",
    ])  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, str(face_image)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert json.loads((empty_cwd / "p.json").read_text())["model"]["kind"] == "onnx"


def test_a_file_named_default_wins_over_the_word(tmp_path, monkeypatch, facekp_checkpoint):
    monkeypatch.chdir(tmp_path)
    shutil.copy(facekp_checkpoint, tmp_path / "default")
    assert resolve.resolve_init_from("default").ckpt == Path("default")


def test_infer_with_no_model_uses_the_shipped_default_and_says_so(empty_cwd, face_image, tiny_dataset):
    result = invoke("infer", face_image, "-o", empty_cwd / "preds.json", "--no-detect")
    assert result.exit_code == 0, result.output
    assert SHIPPED in result.stderr and result.stderr.count("facekp: model:") == 1
    record = json.loads((empty_cwd / "preds.json").read_text())
    # on the CPU the shipped default answers through its ONNX twin (no torch import)
    assert record["model"]["path"] == str(resolve.default_onnx_path())
    assert record["model"]["kind"] == "onnx" and "facekp-default.onnx" in result.stderr
    found = record["images"][0]["points"]
    points = np.array([[found[name]["x"], found[name]["y"]] for name in record["keypoint_names"]])
    # a real model on a synthetic face: close to the exact labels (NME-sized error, not the mean shape)
    truth = synthetic_faces(tiny_dataset, 1)[0][1]
    assert np.nanmean(np.linalg.norm(points - truth, axis=1)) < 0.1 * np.ptp(truth[:, 0])


def test_infer_photo_with_no_other_argument_prints_the_points(empty_cwd, face_image):
    result = invoke("infer", face_image, "--no-detect")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)  # stdout holds the JSON document and nothing else
    assert record["images"][0]["name"] == face_image.name and len(record["images"][0]["points"]) == 14
    assert "wrote standard output (json): 1 images" in result.stderr
    assert list(empty_cwd.iterdir()) == []  # nothing written to disk
    refused = invoke("infer", face_image, "--resume")
    assert refused.exit_code == 2 and "--resume needs an output file" in refused.stderr
    assert "facekp: model:" not in refused.stderr  # refused before any model is chosen


def test_quiet_hides_the_model_line(empty_cwd, face_image):
    result = invoke("--quiet", "infer", face_image, "-o", empty_cwd / "p.json", "--no-detect")
    assert result.exit_code == 0, result.output
    assert "facekp: model:" not in result.stderr


def test_a_local_best_ckpt_answers_before_the_default(empty_cwd, face_image, facekp_checkpoint):
    shutil.copy(facekp_checkpoint, empty_cwd / "best.ckpt")
    result = invoke("infer", face_image, "-o", empty_cwd / "preds.json", "--no-detect")
    assert result.exit_code == 0, result.output
    assert "best.ckpt (train.best_path)" in result.stderr and SHIPPED not in result.stderr


def test_eval_overlay_align_and_video_run_on_the_default(empty_cwd, face_image, tiny_dataset):
    report = invoke("eval", "--data", tiny_dataset / "test", "--json")
    assert report.exit_code == 0, report.output
    assert SHIPPED in report.stderr
    assert json.loads(report.stdout)["metrics"]["nme"] < 15.0  # mean shape of these faces: ~30

    drawn = invoke("overlay", face_image, "-o", empty_cwd / "overlaid", "--no-detect")
    assert drawn.exit_code == 0, drawn.output
    assert SHIPPED in drawn.stderr and any((empty_cwd / "overlaid").iterdir())

    aligned = invoke("align", face_image, "-o", empty_cwd / "aligned", "--no-detect")
    assert aligned.exit_code == 0, aligned.output
    assert SHIPPED in aligned.stderr and (empty_cwd / "aligned" / "transforms.csv").is_file()

    clip = empty_cwd / "face.avi"
    write_clip(clip, "still", synthetic_faces(tiny_dataset, 1), size=(128, 128), face_height=128.0, frames=4)
    video = invoke("infer", clip, "-o", empty_cwd / "clip.jsonl")
    assert video.exit_code == 0, video.output
    assert SHIPPED in video.stderr and len((empty_cwd / "clip.jsonl").read_text().splitlines()) >= 3


def test_export_onnx_works_out_of_the_box_and_writes_to_the_cwd(empty_cwd):
    package = resolve.default_checkpoint_path().parent
    before = sorted(p.name for p in package.iterdir())
    result = invoke("export", "--format", "onnx", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert Path(report["path"]).resolve() == (empty_cwd / "facekp-default.onnx").resolve()
    assert report["verification"]["passed"]
    assert sorted(p.name for p in package.iterdir()) == before  # nothing written into the package

    from facekp_cli.predict.backends import onnx_predictor

    meta = onnx_predictor(empty_cwd / "facekp-default.onnx").meta
    assert meta.build_info["data_md5"] == meta.data_hash  # the recipe travels into the export


def test_the_mlflow_pyfunc_serves_the_default(empty_cwd, face_image):
    import mlflow.pyfunc

    uri = f"sqlite:///{empty_cwd / 'mlflow.db'}"
    os.environ["FACEKP_TRACKING__URI"] = uri
    try:
        result = invoke("export", "--register", "facekp-default", "--json")
    finally:
        os.environ.pop("FACEKP_TRACKING__URI")
    assert result.exit_code == 0, result.output
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(json.loads(result.stdout)["registered"]["model_uri"])
    import pandas as pd

    frame = model.predict(pd.DataFrame({"image": [str(face_image)]}))
    assert frame.shape == (1, 28) and np.isfinite(frame.to_numpy()).all()


def test_fine_tuning_starts_from_the_default_weights():
    import torch

    from facekp_cli.model.checkpoint import build_network, load_checkpoint
    from facekp_cli.services.train import start_from_weights

    shipped = load_checkpoint(resolve.default_checkpoint_path())
    network = build_network(shipped.meta)
    start_from_weights(network, "default", shipped.meta.preprocessing.input_size)
    for name, value in shipped.model.state_dict().items():
        assert torch.equal(network.state_dict()[name], value), name


def test_train_init_from_default_runs(empty_cwd, tiny_dataset):
    # the finetune preset: the shipped default's network (96 px, width 32) and init_from=default
    args = ["--preset", "finetune", "--set", f"data.root={tiny_dataset}", "--set", "train.batch_size=8"]
    result = invoke(*args, "train", "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert SHIPPED in result.stderr
    assert "were trained at" not in result.stderr  # the preset matches the shipped network
    assert (empty_cwd / "best.ckpt").is_file()


def test_finetune_preset_is_the_shipped_network():
    from facekp_cli.model.checkpoint import load_checkpoint
    from facekp_cli.settings import PRESETS

    meta = load_checkpoint(resolve.default_checkpoint_path()).meta
    preset = PRESETS["finetune"]
    assert (preset["model.input_size"], preset["model.width"]) == (meta.preprocessing.input_size, meta.width)


def test_shipped_default_on_real_faces():
    """On 60 real faces (every 90th of the set), far better than their mean shape (NME ~11 %)."""
    if not (REAL_FACES / "gt.csv").is_file():
        pytest.skip(f"real faces not available at {REAL_FACES}")
    from facekp_cli.data.format import read_gt_csv
    from facekp_cli.data.images import decode_image
    from facekp_cli.frame import normalised_to_points, prepare_image
    from facekp_cli.metrics import nme_per_image
    from facekp_cli.predict.backends import checkpoint_predictor

    names, points = read_gt_csv(REAL_FACES / "gt.csv")
    rows = range(0, len(names), 90)
    predictor = checkpoint_predictor(resolve.default_checkpoint_path())
    images = [decode_image(REAL_FACES / "images" / names[i]) for i in rows]
    batch = np.stack([prepare_image(image, predictor.meta.preprocessing) for image in images])
    sizes = np.array([(image.shape[1], image.shape[0]) for image in images], np.float64)
    found = normalised_to_points(predictor.predict(batch), sizes[:, 0], sizes[:, 1])
    nme = np.nanmean(nme_per_image(found, points[list(rows)]))
    assert nme < 0.085
