"""Untrusted files: a checkpoint never runs code, dataset filenames never leave the dataset, no shell.

tests/reliability/test_model_files.py covers the loader itself (hostile pickles, fuzzing) and
`facekp infer`; here every other verb that opens a checkpoint, the verbs that read a dataset,
the importers, and a scan of facekp's own source for shells and unsafe loaders.
"""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import facekp_cli
from facekp_cli.cli.main import app
from facekp_cli.errors import ExitCode
from facekp_cli.frame import Preprocessing
from facekp_cli.model.checkpoint import FACEKP_KEY, ModelMeta, build_network

TINY = ["--set", "model.input_size=32", "--set", "model.width=8", "--set", "data.num_workers=0"]


class RunsCode:
    """Unpickling this would call os.system (the classic payload); facekp must refuse first."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture()
def hostile(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A checkpoint that is facekp's in every way except one field, which would run a command."""
    monkeypatch.chdir(tmp_path)
    meta = ModelMeta(Preprocessing.for_channels(32, 3), width=8)
    state = {f"model.{k}": v for k, v in build_network(meta).state_dict().items()}
    marker = tmp_path / "owned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": state, FACEKP_KEY: meta.to_dict(), "hyper_parameters": RunsCode(marker)}, path)
    return path, marker


@pytest.mark.parametrize(
    "verb",
    [
        ["eval", "--ckpt", "evil.ckpt", "--data", "DATA/test"],
        ["export", "--ckpt", "evil.ckpt", "-o", "m.onnx", "--no-verify"],
        [*TINY, "train", "--data", "DATA", "--resume", "evil.ckpt", "--no-tracking"],
        ["infer", "--no-detect", "DATA/test/images", "--ckpt", "evil.ckpt", "-o", "p.json"],
    ],
    ids=["eval", "export", "train --resume", "infer"],
)
def test_no_verb_runs_code_from_a_checkpoint(hostile, tiny_dataset, verb):
    _, marker = hostile
    args = [arg.replace("DATA", str(tiny_dataset)) for arg in verb]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == ExitCode.MODEL, result.output
    assert not marker.exists()
    assert "evil.ckpt: refused to load: it asks to import" in result.stderr and "system" in result.stderr
    assert "Traceback" not in result.output


# --- dataset filenames ----------------------------------------------------------------------------


@pytest.fixture()
def escaping_dataset(tmp_path, tiny_dataset, monkeypatch) -> Path:
    """A dataset whose gt.csv names a real file outside it, by `..` and by a symlink."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset, root)
    secret = tmp_path / "secret.jpg"
    shutil.copy(next((root / "train" / "images").iterdir()), secret)
    return root


def _rename_first_row(root: Path, new_name: str) -> None:
    gt = root / "train" / "gt.csv"
    lines = gt.read_text().splitlines(keepends=True)
    lines[1] = new_name + "," + lines[1].split(",", 1)[1]
    gt.write_text("".join(lines))


@pytest.mark.parametrize("how", ["parent folder", "symlink"])
@pytest.mark.parametrize(
    "verb",
    [
        ["data", "validate", "ds"],
        ["data", "show", "ds", "--out", "g.png"],
        ["eval", "--ckpt", "CKPT", "--data", "ds/train"],
        [*TINY, "train", "--data", "ds", "--no-tracking", "--epochs", "1"],
    ],
    ids=["data validate", "data show", "eval", "train"],
)
def test_dataset_filenames_cannot_leave_the_dataset(escaping_dataset, tiny_checkpoint, verb, how):
    root = escaping_dataset
    if how == "parent folder":
        name = "../../../secret.jpg"
    else:
        name = "innocent.jpg"
        (root / "train" / "images" / name).symlink_to(root.parent / "secret.jpg")
    _rename_first_row(root, name)
    result = CliRunner().invoke(app, [arg.replace("CKPT", str(tiny_checkpoint)) for arg in verb])
    validate = verb[:2] == ["data", "validate"]  # lists every problem, then exits 1
    assert result.exit_code == (ExitCode.FAILURE if validate else ExitCode.DATA), result.output
    assert "outside images/" in result.output and name in result.output
    assert "Traceback" not in result.output
    assert not (root.parent / "g.png").exists() and not (root.parent / "runs").exists()


def _write_pts(path: Path, points: np.ndarray) -> None:
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in points)
    path.write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")


def test_ibug_import_keeps_every_file_inside_the_new_dataset(tmp_path):
    """Nested folders and awkward names in the source become flat, readable names under images/."""
    import cv2

    from facekp_cli.data.format import read_split

    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
    names = ["a/b/deep", "..dots", "sp ace, comma", "ünï", "-rf", "$(touch owned)"]
    for name in names:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(src / f"{name}.png"), photo)
        _write_pts(src / f"{name}.pts", np.column_stack([rng.uniform(60, 140, 68), rng.uniform(60, 140, 68)]))
    out = tmp_path / "imported"
    result = CliRunner().invoke(
        app, ["data", "import", "ibug", str(src), "--out", str(out), "--test-fraction", "0"]
    )
    assert result.exit_code == 0, result.output
    split = read_split(out / "train")  # the reader's own escape checks pass on every name
    assert len(split) == len(names)
    for i, filename in enumerate(split.filenames):
        assert "/" not in filename
        assert split.image_path(i).resolve().parent == (out / "train" / "images").resolve()
    written = {p.resolve() for p in tmp_path.rglob("*") if p.is_file()} - {
        p.resolve() for p in src.rglob("*") if p.is_file()
    }
    assert all(out.resolve() in p.parents for p in written)
    assert not (tmp_path / "owned").exists() and not Path("owned").exists()


# --- facekp's own source: no shell, no unsafe loaders ----------------------------------------------

SOURCE = Path(facekp_cli.__file__).parent


def _call_name(node: ast.Call) -> str:
    parts, func = [], node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    parts.append(func.id if isinstance(func, ast.Name) else "?")  # ?.eval(): a method on an expression
    return ".".join(reversed(parts))


SHELL_FUNCTIONS = {
    "os.system", "os.popen", "os.execl", "os.execlp", "os.execle", "os.execlpe", "os.spawnl",
    "os.spawnlp", "subprocess.getoutput", "subprocess.getstatusoutput", "asyncio.create_subprocess_shell",
    "commands.getoutput", "pty.spawn",
}  # fmt: skip
PROCESS_STARTERS = ("run", "Popen", "call", "check_call", "check_output", "create_subprocess_exec")
CODE_RUNNERS = {"eval", "exec", "compile", "pickle.load", "pickle.loads", "marshal.loads", "dill.load"}


def unsafe_calls(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        keywords = {k.arg: k.value for k in node.keywords}
        shell = keywords.get("shell")
        starts_process = name.split(".")[-1] in PROCESS_STARTERS
        if (
            starts_process
            and shell is not None
            and not (isinstance(shell, ast.Constant) and shell.value is False)
        ):
            found.append(f"{node.lineno}: {name}(shell=...)")
        if name in SHELL_FUNCTIONS or name in CODE_RUNNERS:
            found.append(f"{node.lineno}: {name}()")
        if name.endswith("torch.load") or (name == "load" and "weights_only" in keywords):
            weights_only = keywords.get("weights_only")
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                found.append(f"{node.lineno}: {name}() without weights_only=True")
    return found


def test_the_scan_finds_what_it_looks_for():
    sample = ast.parse(
        "import os, subprocess, torch\n"
        "subprocess.run(cmd, shell=True)\nsubprocess.Popen(cmd, shell=flag)\nos.system(cmd)\nos.popen(cmd)\n"
        "torch.load(p)\ntorch.load(p, weights_only=False)\neval(text)\n"
        "subprocess.run(['git', 'x'], shell=False)\ntorch.load(p, weights_only=True)\nmodel.to(d).eval()\n"
        "completion_script(shell='bash')\n"
    )
    assert [line.split(":")[0] for line in unsafe_calls(sample)] == ["2", "3", "4", "5", "6", "7", "8"]


def test_no_shell_and_no_unsafe_loader_in_facekp():
    files = sorted(SOURCE.rglob("*.py"))
    assert len(files) > 20
    problems = [
        f"{path.relative_to(SOURCE.parent)}:{hit}"
        for path in files
        for hit in unsafe_calls(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    ]
    assert problems == []
