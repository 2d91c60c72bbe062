"""Bad input through every verb: one line naming the file and the problem, the right exit code.

Each case runs the real command line (CliRunner on facekp_cli.cli.main.app) in a folder of
broken things; `-v` must add the traceback the plain run hides.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.errors import ExitCode

TINY = ["--set", "model.input_size=32", "--set", "model.width=8", "--set", "data.num_workers=0"]
NO_TRACKING = ["--no-tracking", "--epochs", "1"]


def _foreign_onnx(path: Path) -> None:
    """A valid ONNX model that facekp did not write (no facekp.* metadata)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3, 32, 32])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.fixture(scope="module")
def broken(tmp_path_factory, tiny_dataset, tiny_checkpoint) -> Path:
    """A folder holding a good model and dataset beside every kind of broken one."""
    work = tmp_path_factory.mktemp("broken")
    shutil.copy(tiny_checkpoint, work / "good.ckpt")
    # a torchvision-style state dict: real tensors, no facekp metadata
    torch.save({"conv1.weight": torch.zeros(4, 3, 7, 7), "fc.weight": torch.zeros(10, 4)}, work / "tv.pth")
    (work / "corrupt.ckpt").write_bytes(b"PK\x03\x04" + os.urandom(600))  # a zip signature, then garbage
    (work / "corrupt.onnx").write_bytes(os.urandom(600))
    _foreign_onnx(work / "foreign.onnx")
    (work / "empty").mkdir()
    (work / "afile").write_text("a file where a folder is expected\n")
    (work / "adir").mkdir()
    (work / "imgs").mkdir()
    for image in sorted((tiny_dataset / "test" / "images").iterdir())[:2]:
        shutil.copy(image, work / "imgs" / image.name)
    shutil.copytree(tiny_dataset, work / "ds")
    shutil.copytree(tiny_dataset, work / "ds_bad")
    lines = (work / "ds_bad" / "train" / "gt.csv").read_text().splitlines(keepends=True)
    cells = lines[2].split(",")
    cells[2] = "abc"  # column y1 of line 3
    lines[2] = ",".join(cells)
    (work / "ds_bad" / "train" / "gt.csv").write_text("".join(lines))
    shutil.copytree(tiny_dataset, work / "ds_noimg")
    shutil.rmtree(work / "ds_noimg" / "train" / "images")
    (work / "preds_garbage.json").write_bytes(os.urandom(300))
    return work


@pytest.fixture()
def in_broken(broken, monkeypatch) -> Path:
    monkeypatch.chdir(broken)  # relative paths in messages; no conf.toml or FACEKP_* leaks in
    for name in [n for n in os.environ if n.startswith("FACEKP_")]:
        monkeypatch.delenv(name)
    return broken


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def command(line: str) -> list[str]:
    words = line.split()
    if words[0] == "TRAIN":
        return [*TINY, "train", *words[1:], *NO_TRACKING]
    return words


def one_error_line(result) -> str:
    # progress lines (`facekp eval: 3/12 images ...`, printed because stderr is not a terminal
    # here) are not errors; every other line is counted
    progress = re.compile(r"^facekp [a-z ]+: ")
    lines = [line for line in result.stderr.splitlines() if line.strip() and not progress.match(line)]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("facekp: error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# name: (command line after `facekp`, exit code, substrings of the one error line: the file, the problem)
# TRAIN stands for the tiny model settings; every train case fails before the first epoch.
CASES = {
    # infer
    "infer: folder with no images": (
        "infer empty --ckpt good.ckpt -o p.json",
        ExitCode.DATA,
        ["empty", "no images found"],
    ),
    "infer: nonexistent input": (
        "infer nope --ckpt good.ckpt -o p.json",
        ExitCode.DATA,
        ["nope", "no such file or folder"],
    ),
    "infer: nonexistent checkpoint": (
        "infer imgs --ckpt nope.ckpt -o p.json",
        ExitCode.MODEL,
        ["nope.ckpt", "not found"],
    ),
    "infer: another model's checkpoint": (
        "infer imgs --ckpt tv.pth -o p.json",
        ExitCode.MODEL,
        ["tv.pth", "not a facekp checkpoint"],
    ),
    "infer: corrupt checkpoint": (
        "infer imgs --ckpt corrupt.ckpt -o p.json",
        ExitCode.MODEL,
        ["corrupt.ckpt", "not a readable checkpoint"],
    ),
    "infer: corrupt ONNX": (
        "infer imgs --model corrupt.onnx -o p.json",
        ExitCode.MODEL,
        ["corrupt.onnx", "not a readable ONNX model"],
    ),
    "infer: ONNX that is not facekp's": (
        "infer imgs --model foreign.onnx -o p.json",
        ExitCode.MODEL,
        ["foreign.onnx", "no facekp metadata"],
    ),
    "infer: output inside a file": (
        "infer imgs --ckpt good.ckpt -o afile/p.json",
        ExitCode.USAGE,
        ["afile/p.json", "afile is a file, not a folder"],
    ),
    "infer: output is a folder": (
        "infer imgs --ckpt good.ckpt -o adir",
        ExitCode.USAGE,
        ["adir", "it is a folder"],
    ),
    # eval
    "eval: folder with no labels": (
        "eval --ckpt good.ckpt --data empty",
        ExitCode.DATA,
        ["empty/gt.csv", "not found"],
    ),
    "eval: nonexistent data": ("eval --ckpt good.ckpt --data nope", ExitCode.DATA, ["nope", "not found"]),
    "eval: another model's checkpoint": (
        "eval --ckpt tv.pth --data ds/test",
        ExitCode.MODEL,
        ["tv.pth", "not a facekp checkpoint"],
    ),
    "eval: corrupt checkpoint": (
        "eval --ckpt corrupt.ckpt --data ds/test",
        ExitCode.MODEL,
        ["corrupt.ckpt", "not a readable checkpoint"],
    ),
    "eval: corrupt ONNX": (
        "eval --model corrupt.onnx --data ds/test",
        ExitCode.MODEL,
        ["corrupt.onnx", "not a readable ONNX model"],
    ),
    "eval: ONNX that is not facekp's": (
        "eval --model foreign.onnx --data ds/test",
        ExitCode.MODEL,
        ["foreign.onnx", "no facekp metadata"],
    ),
    "eval: broken gt.csv": (
        "eval --ckpt good.ckpt --data ds_bad/train",
        ExitCode.DATA,
        ["ds_bad/train/gt.csv:3:", "column y1: 'abc' is not a number"],
    ),
    "eval: nonexistent predictions": (
        "eval --pred nope.csv --gt ds/test/gt.csv",
        ExitCode.DATA,
        ["nope.csv", "not found"],
    ),
    "eval: predictions that are random bytes": (
        "eval --pred preds_garbage.json --gt ds/test/gt.csv",
        ExitCode.DATA,
        ["preds_garbage.json"],
    ),
    "eval: report inside a file": (
        "eval --ckpt good.ckpt --data ds/test -o afile/r.json",
        ExitCode.USAGE,
        ["afile/r.json", "is a file, not a folder"],
    ),
    "eval: report is a folder": (
        "eval --ckpt good.ckpt --data ds/test -o adir",
        ExitCode.USAGE,
        ["adir", "it is a folder"],
    ),
    "eval: plots inside a file": (
        "eval --ckpt good.ckpt --data ds/test --plots afile/plots",
        ExitCode.USAGE,
        ["afile/plots", "is a file, not a folder"],
    ),
    # export
    "export: nonexistent checkpoint": (
        "export --ckpt nope.ckpt -o m.onnx --no-verify",
        ExitCode.MODEL,
        ["nope.ckpt", "not found"],
    ),
    "export: another model's checkpoint": (
        "export --ckpt tv.pth -o m.onnx --no-verify",
        ExitCode.MODEL,
        ["tv.pth", "not a facekp checkpoint"],
    ),
    "export: corrupt checkpoint": (
        "export --ckpt corrupt.ckpt -o m.onnx --no-verify",
        ExitCode.MODEL,
        ["corrupt.ckpt", "not a readable checkpoint"],
    ),
    "export: verification data with no images": (
        "export --ckpt good.ckpt -o m.onnx --data empty",
        ExitCode.DATA,
        ["empty", "no images for export verification"],
    ),
    "export: nonexistent verification data": (
        "export --ckpt good.ckpt -o m.onnx --data nope",
        ExitCode.DATA,
        ["nope", "no images for export verification"],
    ),
    "export: output inside a file": (
        "export --ckpt good.ckpt -o afile/m.onnx --no-verify",
        ExitCode.USAGE,
        ["afile/m.onnx", "is a file, not a folder"],
    ),
    "export: output is a folder": (
        "export --ckpt good.ckpt -o adir --no-verify",
        ExitCode.USAGE,
        ["adir", "it is a folder"],
    ),
    # train
    "train: nonexistent data folder": (
        "TRAIN --data nope",
        ExitCode.DATA,
        ["nope/train/gt.csv", "no training data", "facekp data synth", "facekp data pull"],
    ),
    "train: data folder with nothing in it": (
        "TRAIN --data empty",
        ExitCode.DATA,
        ["empty/train/gt.csv", "facekp data synth", "facekp data pull"],
    ),
    "train: broken gt.csv": (
        "TRAIN --data ds_bad",
        ExitCode.DATA,
        ["ds_bad/train/gt.csv:3:", "column y1: 'abc' is not a number"],
    ),
    "train: images folder missing": (
        "TRAIN --data ds_noimg",
        ExitCode.DATA,
        ["ds_noimg/train/images/", "not found"],
    ),
    "train: resume from another model's checkpoint": (
        "TRAIN --data ds --resume tv.pth",
        ExitCode.MODEL,
        ["tv.pth", "not a facekp checkpoint"],
    ),
    "train: resume from a corrupt checkpoint": (
        "TRAIN --data ds --resume corrupt.ckpt",
        ExitCode.MODEL,
        ["corrupt.ckpt", "not a readable checkpoint"],
    ),
    # data validate
    "data validate: folder with no splits": (
        "data validate empty",
        ExitCode.DATA,
        ["empty", "no train/ or test/ split"],
    ),
    "data validate: nonexistent folder": (
        "data validate nope",
        ExitCode.DATA,
        ["nope", "dataset folder not found", "facekp data synth"],
    ),
    # data show
    "data show: folder with no splits": (
        "data show empty --out g.png",
        ExitCode.DATA,
        ["empty/train", "split folder not found"],
    ),
    "data show: nonexistent folder": (
        "data show nope --out g.png",
        ExitCode.DATA,
        ["nope/train", "facekp data synth"],
    ),
    "data show: broken gt.csv": (
        "data show ds_bad --out g.png",
        ExitCode.DATA,
        ["ds_bad/train/gt.csv:3:", "'abc' is not a number"],
    ),
    "data show: images folder missing": (
        "data show ds_noimg --out g.png",
        ExitCode.DATA,
        ["ds_noimg/train/images/", "not found"],
    ),
    "data show: output inside a file": (
        "data show ds --out afile/g.png",
        ExitCode.USAGE,
        ["afile/g.png", "is a file, not a folder"],
    ),
    "data show: output is a folder": ("data show ds --out adir", ExitCode.USAGE, ["adir", ".png or .jpg"]),
}


@pytest.mark.parametrize(("args", "code", "expected"), CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_line_naming_the_file_and_the_problem(in_broken, args, code, expected):
    before = sorted(p.name for p in in_broken.iterdir())
    result = run(*command(args))
    assert result.exit_code == code, result.output
    line = one_error_line(result)
    for text in expected:
        assert text in line, line
    after = sorted(p.name for p in in_broken.iterdir())
    assert after == before  # nothing half-written (no p.json, m.onnx, g.png, runs/, temporaries)


VERBOSE = ["infer: corrupt checkpoint", "train: broken gt.csv", "data validate: nonexistent folder"]


@pytest.mark.parametrize("case", VERBOSE)
def test_verbose_adds_the_traceback_before_the_same_line(in_broken, case):
    args, code, expected = CASES[case]
    result = run("-v", *command(args))
    assert result.exit_code == code
    assert "Traceback (most recent call last)" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("facekp: error: ") and all(text in last for text in expected)


# Training checks the places it will write (run folder, best_path, the sqlite store) before it starts.
TRAIN_OUTPUTS = {
    "train: train.out_dir inside a file": ("train.out_dir=afile/runs", ["afile/runs", "is a file"]),
    "train: MLflow sqlite store inside a file": ("tracking.uri=sqlite:///afile/m.db", ["afile/m.db"]),
}


@pytest.mark.parametrize(("setting", "expected"), TRAIN_OUTPUTS.values(), ids=TRAIN_OUTPUTS.keys())
def test_train_outputs_that_cannot_be_written(in_broken, setting, expected):
    tracking = [] if setting.startswith("tracking.") else ["--no-tracking"]
    result = run(*TINY, "--set", setting, "-q", "train", "--data", "ds", "--epochs", "1", *tracking)
    assert result.exit_code == ExitCode.USAGE, result.output
    line = one_error_line(result)
    assert all(text in line for text in expected), line
