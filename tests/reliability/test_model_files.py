"""Checkpoints and exported models that are corrupt, foreign or hostile -> ModelFileError (exit code 6).

Loading never runs code from the file: checkpoints go through torch.load(weights_only=True), and
a pickle that would call a function is refused with a message that says so.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from facekp_cli.errors import ExitCode, ModelFileError
from facekp_cli.frame import Preprocessing
from facekp_cli.model.checkpoint import (
    FACEKP_KEY,
    META_FORMAT,
    ModelMeta,
    build_network,
    load_checkpoint,
)

FACEKP = str(Path(sys.executable).with_name("facekp"))
META = ModelMeta(Preprocessing.for_channels(32, 3), width=8)


def save_checkpoint(path: Path, meta: ModelMeta = META, state: dict | None = None, **extra) -> Path:
    """What training writes: a Lightning-style dict whose state_dict keys start with 'model.'."""
    if state is None:
        state = {f"model.{k}": v for k, v in build_network(meta).state_dict().items()}
    torch.save({"state_dict": state, FACEKP_KEY: meta.to_dict(), "epoch": 1, **extra}, path)
    return path


def model_error(path: Path) -> str:
    with pytest.raises(ModelFileError) as info:
        load_checkpoint(path)
    assert info.value.exit_code == ExitCode.MODEL
    message = str(info.value)
    assert str(path) in message and "\n" not in message and "\x1b" not in message
    return message


class RunsCode:
    """Unpickling this would call exec(); facekp must refuse before that happens."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


@pytest.fixture()
def good(tmp_path) -> Path:
    return save_checkpoint(tmp_path / "good.ckpt")


def test_a_good_checkpoint_loads_and_predicts(good):
    loaded = load_checkpoint(good)
    assert loaded.meta == replace(META)
    with torch.no_grad():
        out = loaded.model(torch.zeros(2, 3, 32, 32))
    assert out.shape[0] == 2 and torch.isfinite(out).all()


def test_missing_file(tmp_path):
    assert "not found" in model_error(tmp_path / "none.ckpt")


def test_a_folder(tmp_path):
    (tmp_path / "dir.ckpt").mkdir()
    assert "not found" in model_error(tmp_path / "dir.ckpt")


def test_empty_file(tmp_path):
    (tmp_path / "e.ckpt").write_bytes(b"")
    assert "not a readable checkpoint" in model_error(tmp_path / "e.ckpt")


def test_random_bytes(tmp_path):
    (tmp_path / "r.ckpt").write_bytes(np.random.default_rng(1).bytes(4096))
    assert "not a readable checkpoint" in model_error(tmp_path / "r.ckpt")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_truncated_checkpoint(good, keep):
    data = good.read_bytes()
    good.write_bytes(data[: int(len(data) * keep)])
    assert "not a readable checkpoint" in model_error(good)


def test_plain_torch_save_without_facekp_metadata(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.ckpt")
    assert "not a facekp checkpoint" in model_error(tmp_path / "plain.ckpt")
    torch.save(torch.zeros(3), tmp_path / "tensor.ckpt")
    assert "not a facekp checkpoint" in model_error(tmp_path / "tensor.ckpt")


def test_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran.txt"
    path = save_checkpoint(tmp_path / "evil.ckpt", payload=RunsCode(marker))
    message = model_error(path)
    assert "refused" in message and "'exec'" in message and "never runs code" in message
    assert not marker.exists()


def test_old_style_pickle_file_that_would_run_code(tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "legacy.ckpt"
    path.write_bytes(pickle.dumps({FACEKP_KEY: RunsCode(marker)}, protocol=2))
    model_error(path)
    assert not marker.exists()


def test_incomplete_metadata(tmp_path):
    meta = META.to_dict()
    del meta["preprocessing"]
    torch.save({"state_dict": {}, FACEKP_KEY: meta}, tmp_path / "m.ckpt")
    assert "metadata is incomplete or corrupt" in model_error(tmp_path / "m.ckpt")


def test_made_by_a_newer_facekp(tmp_path):
    path = save_checkpoint(tmp_path / "new.ckpt", meta=replace(META, format=META_FORMAT + 1))
    assert "newer facekp" in model_error(path)


def test_weights_of_another_model(tmp_path):
    other = {f"model.{k}": v for k, v in build_network(replace(META, width=16)).state_dict().items()}
    path = save_checkpoint(tmp_path / "other.ckpt", state=other)
    assert "weights do not fit" in model_error(path)


def test_weights_missing(tmp_path):
    assert "weights do not fit" in model_error(save_checkpoint(tmp_path / "w.ckpt", state={}))


# --- through the command line: one line, exit code 6, no traceback ------------------------------


@pytest.fixture()
def one_image(tmp_path) -> Path:
    path = tmp_path / "face.png"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(path)
    return path


def run_infer(tmp_path: Path, image: Path, *model_args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEKP_")}
    return subprocess.run(
        [FACEKP, "infer", "--no-detect", str(image), *model_args, "--out", str(tmp_path / "preds.json")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


@pytest.mark.parametrize("kind", ["random bytes", "code", "onnx garbage", "torchscript garbage"])
def test_cli_reports_a_bad_model_file_in_one_line(tmp_path, one_image, kind):
    marker = tmp_path / "ran.txt"
    if kind == "random bytes":
        (tmp_path / "m.ckpt").write_bytes(os.urandom(2048))
        args = ["--ckpt", "m.ckpt"]
    elif kind == "code":
        save_checkpoint(tmp_path / "m.ckpt", payload=RunsCode(marker))
        args = ["--ckpt", "m.ckpt"]
    elif kind == "onnx garbage":
        (tmp_path / "m.onnx").write_bytes(os.urandom(2048))
        args = ["--model", "m.onnx"]
    else:
        (tmp_path / "m.pt").write_bytes(os.urandom(2048))
        args = ["--model", "m.pt"]
    proc = run_infer(tmp_path, one_image, *args)
    assert proc.returncode == ExitCode.MODEL, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("facekp: error: m."), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "preds.json").exists()
    assert not marker.exists()


def test_onnx_model_that_is_not_facekps(tmp_path, one_image):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3, 32, 32])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "f.onnx")
    proc = run_infer(tmp_path, one_image, "--model", "f.onnx")
    assert proc.returncode == ExitCode.MODEL
    assert "f.onnx: no facekp metadata" in proc.stderr


# --- fuzzing: whatever the bytes or the structure, the answer is a model or a ModelFileError ------

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.binary(max_size=512), prefix=st.sampled_from([b"", b"\x80\x02", b"PK\x03\x04"]))
def test_any_bytes_give_a_one_line_model_error(tmp_path, data, prefix):
    path = tmp_path / "fuzz.ckpt"
    path.write_bytes(prefix + data)
    model_error(path)


_plain = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(
    meta_patch=st.dictionaries(st.sampled_from(sorted(META.to_dict())), _plain, max_size=3),
    state=st.one_of(_plain, st.just("good")),
)
def test_any_checkpoint_structure_loads_or_gives_a_model_error(tmp_path, meta_patch, state):
    """Metadata fields and the state dict replaced by arbitrary plain data, as a hostile file could."""
    meta = {**META.to_dict(), **meta_patch}
    weights = {f"model.{k}": v for k, v in build_network(META).state_dict().items()}
    path = tmp_path / "fuzz.ckpt"
    torch.save({"state_dict": weights if state == "good" else state, FACEKP_KEY: meta}, path)
    try:
        load_checkpoint(path)
    except ModelFileError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
