"""Neighbours: two `facekp` processes started at once that write the same place. Training runs get
a folder each (a lock for a --run-name, the next free suffix for a timestamp) and the shared
train.best_path is replaced whole; two infer runs to one JSON file leave one run's whole result;
two streamed runs to one JSON Lines file are refused, the second with a clear message.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

FACEKP = str(Path(sys.executable).with_name("facekp"))

pytestmark = pytest.mark.slow


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEKP_")}
    return subprocess.Popen([FACEKP, "-q", *args], cwd=cwd, env={**env, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _both(*procs: subprocess.Popen) -> list[tuple[int, str]]:
    errors = [p.communicate(timeout=900)[1] for p in procs]
    return [(p.returncode, err) for p, err in zip(procs, errors, strict=True)]


def _train_flags(data: Path, work: Path) -> list[str]:
    values = {
        "data.root": data, "data.num_workers": 0, "model.input_size": 32, "model.width": 8,
        "train.batch_size": 8, "train.out_dir": work / "runs", "train.best_path": work / "best.ckpt",
        "train.accelerator": "cpu", "train.devices": "1",
    }  # fmt: skip
    return [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]


def _weights(path: Path) -> dict:
    from facekp_cli.model.checkpoint import read_checkpoint_dict

    return read_checkpoint_dict(path)["state_dict"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_two_trains_with_one_run_name_one_wins_the_other_is_told(tmp_path, tiny_dataset):
    args = [
        *_train_flags(tiny_dataset, tmp_path),
        "train",
        "--epochs",
        "2",
        "--run-name",
        "same",
        "--no-tracking",
    ]
    results = _both(_start(args, tmp_path), _start(args, tmp_path))
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert len(loser.strip().splitlines()) == 1
    assert (
        "another facekp train is writing this run folder" in loser or "a run with this name exists" in loser
    )
    assert _same(_weights(tmp_path / "best.ckpt"), _weights(tmp_path / "runs" / "same" / "best.ckpt"))


def test_two_unnamed_trains_get_two_folders_and_one_whole_best_path(tmp_path, tiny_dataset):
    flags = _train_flags(tiny_dataset, tmp_path)
    first = _start([*flags, "train", "--epochs", "2", "--seed", "1", "--no-tracking"], tmp_path)
    second = _start([*flags, "train", "--epochs", "2", "--seed", "2", "--no-tracking"], tmp_path)
    assert [code for code, _ in _both(first, second)] == [0, 0]
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all(
        (f / "best.ckpt").is_file() and (f / "last.ckpt").is_file() for f in folders
    )
    stable = _weights(tmp_path / "best.ckpt")  # whole, and exactly one run's best
    assert [_same(stable, _weights(f / "best.ckpt")) for f in folders].count(True) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.fixture(scope="module")
def two_folders(tmp_path_factory) -> tuple[Path, Path]:
    from PIL import Image

    root = tmp_path_factory.mktemp("neighbours")
    rng = np.random.default_rng(2)
    for name, count in (("x", 400), ("y", 250)):
        (root / name).mkdir()
        for i in range(count):
            image = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / name / f"{name}{i:04d}.png")
    return root / "x", root / "y"


def test_two_infers_to_one_json_leave_one_whole_result(tmp_path, two_folders, tiny_checkpoint):
    out = tmp_path / "preds.json"
    x, y = two_folders
    runs = [_start(["infer", "--no-detect", str(folder), "--ckpt", str(tiny_checkpoint), "--out", str(out)],
                   tmp_path) for folder in (x, y)]  # fmt: skip
    assert [code for code, _ in _both(*runs)] == [0, 0]
    names = {Path(e["path"]).parent.name for e in json.loads(out.read_text())["images"]}
    count = len(json.loads(out.read_text())["images"])
    assert (names, count) in (({"x"}, 400), ({"y"}, 250))  # never a mix
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_second_streamed_infer_to_the_same_file_is_refused(tmp_path, two_folders, tiny_checkpoint):
    out = tmp_path / "preds.jsonl"
    x, y = two_folders
    first = _start(
        ["infer", "--no-detect", str(x), "--ckpt", str(tiny_checkpoint), "--out", str(out), "-b", "8"],
        tmp_path,
    )
    deadline = time.monotonic() + 300
    while not (out.exists() and out.read_bytes().count(b"\n") > 8):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-2000:]
        time.sleep(0.005)
    first.send_signal(signal.SIGSTOP)  # frozen mid-run, holding its lock: the neighbour is surely there
    try:
        second = _start(
            ["infer", "--no-detect", str(y), "--ckpt", str(tiny_checkpoint), "--out", str(out), "--resume"],
            tmp_path,
        )
        code2, err2 = second.wait(600), second.communicate()[1]
    finally:
        first.send_signal(signal.SIGCONT)
    assert code2 == 2 and "another facekp infer is writing this file" in err2, err2
    assert first.wait(600) == 0, first.communicate()[1][-2000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {Path(r["path"]).parent.name for r in records if "path" in r} == {"x"}  # nothing of y mixed in
    assert sum(1 for r in records if "path" in r) == 400
