"""A full disk (a real tmpfs of a few hundred KB, mounted for the test) under every writer: infer's
JSON and streamed JSON Lines, export, data synth and training checkpoints. Each ends with one line
naming the path and 'No space left on device' (exit 2), the earlier file intact, no temporary left.

Mounting needs root (or CAP_SYS_ADMIN); where `mount -t tmpfs` is refused the tests skip, saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FACEKP = str(Path(sys.executable).with_name("facekp"))
FULL = "No space left on device"

pytestmark = pytest.mark.slow


@pytest.fixture()
def small_disk(tmp_path):
    """Returns mount(size) -> a fresh tmpfs of that size under tmp_path, unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _fill(disk: Path, leave_bytes: int) -> Path:
    """Fill the file system up to `leave_bytes` free."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    filler.write_bytes(b"\0" * max(0, free - leave_bytes))
    return filler


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEKP_")}
    return subprocess.run([FACEKP, "-q", *args], cwd=cwd, env={**env, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def _one_line_naming(result: subprocess.CompletedProcess, path: Path) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and FULL in lines[0], result.stderr[-2000:]


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("imgs") / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(300):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return folder


def test_infer_json_on_a_full_disk_keeps_the_old_predictions(tmp_path, small_disk, images, tiny_checkpoint):
    disk = small_disk("256k")
    out = disk / "preds.json"
    out.write_text('{"old": true}\n')
    _fill(disk, 16 * 1024)
    result = _run(
        ["infer", "--no-detect", str(images), "--ckpt", str(tiny_checkpoint), "--out", str(out)], tmp_path
    )
    _one_line_naming(result, out)
    assert out.read_text() == '{"old": true}\n' and _leftovers(disk) == []


def test_streamed_infer_on_a_full_disk_keeps_whole_lines_and_resumes(
    tmp_path, small_disk, images, tiny_checkpoint
):
    disk = small_disk("256k")
    out = disk / "preds.jsonl"
    filler = _fill(disk, 60 * 1024)
    args = [
        "infer",
        "--no-detect",
        str(images),
        "--ckpt",
        str(tiny_checkpoint),
        "--out",
        str(out),
        "-b",
        "16",
    ]
    result = _run(args, tmp_path)
    _one_line_naming(result, out)
    records = [json.loads(line) for line in out.read_text().splitlines()]  # whole lines only
    kept = sum(1 for r in records if "path" in r)
    assert 0 < kept < 300 and kept % 16 == 0  # cut back to its last whole batch
    filler.unlink()
    resumed = _run([*args, "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    entries = [json.loads(line) for line in out.read_text().splitlines()]
    assert len({e["path"] for e in entries if "path" in e}) == 300 == sum(1 for e in entries if "path" in e)


def test_export_on_a_full_disk_keeps_the_old_model(tmp_path, small_disk, tiny_checkpoint, tiny_dataset):
    disk = small_disk("512k")
    out = disk / "model.onnx"
    out.write_bytes(b"previous model")
    args = ["export", "--ckpt", str(tiny_checkpoint), "--out", str(out), "--data", str(tiny_dataset / "test")]
    result = _run(args, tmp_path)
    _one_line_naming(result, out)
    assert out.read_bytes() == b"previous model" and _leftovers(disk) == []


def test_synth_on_a_full_disk_keeps_the_old_dataset(tmp_path, small_disk):
    disk = small_disk("2m")
    data = disk / "faces_data"
    assert _run(["data", "synth", "--n", "4", "--workers", "1", "--out", str(data)], tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    result = _run(["data", "synth", "--n", "300", "--workers", "1", "--out", str(data)], tmp_path)
    _one_line_naming(result, data)
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    assert [p.name for p in disk.iterdir()] == ["faces_data"]  # no temporary folder left


def test_training_on_a_full_disk_keeps_whole_checkpoints(tmp_path, small_disk, tiny_dataset):
    from facekp_cli.model.checkpoint import read_checkpoint_dict

    disk = small_disk("5500k")  # a training checkpoint of this network is about 2.2 MB (without EMA's copies)
    settings = {
        "train.ema_decay": 0,
        "data.root": tiny_dataset, "data.num_workers": 0, "model.input_size": 32, "model.width": 8,
        "train.batch_size": 8, "train.out_dir": disk / "runs", "train.best_path": disk / "best.ckpt",
        "train.accelerator": "cpu", "train.devices": "1", "train.early_stop_patience": 0,
    }  # fmt: skip
    flags = [arg for k, v in settings.items() for arg in ("--set", f"{k}={v}")]
    result = _run([*flags, "train", "--epochs", "4", "--run-name", "full", "--no-tracking"], tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert FULL in line and str(disk / "runs" / "full") in line, result.stderr[-3000:]
    run = disk / "runs" / "full"
    assert _leftovers(disk) == []
    for name in ("best.ckpt", "last.ckpt"):  # the last whole ones, loadable
        assert "state_dict" in read_checkpoint_dict(run / name)
