"""A killed long job keeps its work: `kill -9` in the middle of `facekp infer` (streamed JSON Lines or
CSV) and of `facekp data synth`, then the same command with `--resume` finishes the job without
redoing what was done, and the result equals that of a run never killed. A dead run's temporary
files are cleaned up (or, for synth, continued) by the next run.
"""

from __future__ import annotations

import csv
import hashlib
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


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEKP_")}
    return {**env, "OMP_NUM_THREADS": "1"}


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([FACEKP, "-q", *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _kill_when(proc: subprocess.Popen, ready, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"ended (rc {proc.returncode}) before the kill: {proc.communicate()[1][-2000:]}")
        assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([FACEKP, "-q", *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def many_images(tmp_path_factory) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("many") / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1500):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    return folder


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _jsonl_points(path: Path) -> dict[str, dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["path"]: r["points"] for r in records if "path" in r}


def test_killed_jsonl_infer_resumes_without_redoing_or_losing_files(tmp_path, many_images, tiny_checkpoint):
    out = tmp_path / "preds.jsonl"
    args = [
        "infer",
        "--no-detect",
        str(many_images),
        "--ckpt",
        str(tiny_checkpoint),
        "--out",
        str(out),
        "-b",
        "16",
        "-j",
        "0",
    ]
    proc = _start(args, tmp_path)
    _kill_when(proc, lambda: _lines(out) > 200)
    kept = _lines(out)
    assert 200 < kept < 1502, "killed too late to test anything"
    assert out.read_text().startswith('{"schema": "facekp.predictions.jsonl"')

    resumed = _run([*args, "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]  # every line whole JSON
    entries = [r for r in records if "path" in r]
    assert len(entries) == len({e["path"] for e in entries}) == 1500  # none twice, none missing
    assert [r for r in records if "schema" in r] == [records[0]]  # one header
    assert records[-1]["summary"]["already_done"] >= kept - 1 - 16  # at most a torn batch redone

    fresh = tmp_path / "fresh.jsonl"
    assert (
        _run(
            ["infer", "--no-detect", str(many_images), "--ckpt", str(tiny_checkpoint), "--out", str(fresh)],
            tmp_path,
        ).returncode
        == 0
    )
    assert _jsonl_points(out) == _jsonl_points(fresh)  # same predictions as a run never killed


def test_killed_csv_infer_resumes_to_the_same_rows(tmp_path, many_images, tiny_checkpoint):
    out = tmp_path / "preds.csv"
    args = [
        "infer",
        "--no-detect",
        str(many_images),
        "--ckpt",
        str(tiny_checkpoint),
        "--out",
        str(out),
        "--resume",
        "-b",
        "16",
    ]
    proc = _start(args, tmp_path)
    _kill_when(proc, lambda: _lines(out) > 200)
    assert _run(args, tmp_path).returncode == 0
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0][0] == "filename" and len(rows) == 1501
    assert sorted(r[0] for r in rows[1:]) == sorted(p.name for p in many_images.iterdir())
    fresh = tmp_path / "fresh.csv"
    assert (
        _run(
            ["infer", "--no-detect", str(many_images), "--ckpt", str(tiny_checkpoint), "--out", str(fresh)],
            tmp_path,
        ).returncode
        == 0
    )
    assert sorted(rows[1:]) == sorted(list(csv.reader(fresh.read_text().splitlines()))[1:])


def test_a_dead_json_runs_temporary_is_removed_by_the_next_run(tmp_path, many_images, tiny_checkpoint):
    out = tmp_path / "preds.json"
    out.write_text('{"old": true}\n')
    args = [
        "infer",
        "--no-detect",
        str(many_images),
        "--ckpt",
        str(tiny_checkpoint),
        "--out",
        str(out),
        "-b",
        "16",
    ]
    proc = _start(args, tmp_path)
    temporaries = lambda: [p for p in tmp_path.iterdir() if p.name.startswith(".preds.json.")]  # noqa: E731
    _kill_when(proc, lambda: any(p.stat().st_size > 20_000 for p in temporaries()))
    assert out.read_text() == '{"old": true}\n' and len(temporaries()) == 1  # kill -9 leaves one
    assert str(proc.pid) in temporaries()[0].name  # named after its dead writer
    assert _run(args, tmp_path).returncode == 0
    assert temporaries() == [] and len(json.loads(out.read_text())["images"]) == 1500


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def test_killed_synth_resumes_to_the_same_bytes(tmp_path):
    synth = ["data", "synth", "--n", "600", "--seed", "5", "--workers", "1"]
    proc = _start([*synth, "--out", "faces_data"], tmp_path)
    folders = lambda: [p for p in tmp_path.iterdir() if p.name.startswith(".faces_data.")]  # noqa: E731
    _kill_when(proc, lambda: any(_lines(f / "progress.jsonl") > 100 for f in folders()))
    assert not (tmp_path / "faces_data").exists() and len(folders()) == 1
    done = _lines(folders()[0] / "progress.jsonl") - 1

    started = time.perf_counter()
    resumed = _run([*synth, "--out", "faces_data", "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert folders() == []  # taken over and moved into place
    whole = _run([*synth, "--out", "whole"], tmp_path)
    assert whole.returncode == 0
    assert _tree(tmp_path / "faces_data") == _tree(tmp_path / "whole")  # byte-identical to a run never killed
    assert done >= 100, f"resumed after {done} images in {time.perf_counter() - started:.1f} s"


def test_synth_without_resume_removes_a_dead_runs_folder(tmp_path):
    synth = ["data", "synth", "--n", "400", "--seed", "1", "--workers", "1", "--out", "faces_data"]
    proc = _start(synth, tmp_path)
    folders = lambda: [p for p in tmp_path.iterdir() if p.name.startswith(".faces_data.")]  # noqa: E731
    _kill_when(proc, lambda: any(_lines(f / "progress.jsonl") > 20 for f in folders()))
    assert len(folders()) == 1
    assert _run([*synth[:-2], "--n", "20", "--out", "faces_data"], tmp_path).returncode == 0
    assert folders() == [] and len(list((tmp_path / "faces_data" / "train" / "images").iterdir())) == 18
