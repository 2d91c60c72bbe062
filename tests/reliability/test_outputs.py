"""Nothing lost: outputs are written to a temporary file and renamed (facekp_cli.atomic).

A failure or interruption while writing leaves the previous file intact and no temporary file
behind; an output path that cannot be written is a one-line usage error (exit code 2).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facekp_cli.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from facekp_cli.errors import ExitCode, UsageError

FACEKP = str(Path(sys.executable).with_name("facekp"))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_success_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "preds.json"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failure_inside_keeps_the_old_file_and_cleans_up(tmp_path, exc):
    target = tmp_path / "preds.json"
    target.write_text("old")
    with pytest.raises(type(exc)), atomic_path(target) as tmp:
        tmp.write_text("half of the new con")
        raise exc
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_failure_before_the_first_write_creates_nothing(tmp_path):
    target = tmp_path / "sub" / "report.json"
    with pytest.raises(ValueError), atomic_path(target):
        raise ValueError("model failed to load")
    assert not target.exists()
    assert leftovers(tmp_path / "sub") == []


def test_missing_folders_are_created(tmp_path):
    write_bytes_atomic(tmp_path / "a" / "b" / "c.bin", b"\x00\x01")
    assert (tmp_path / "a" / "b" / "c.bin").read_bytes() == b"\x00\x01"


def test_new_files_get_the_usual_permissions_and_old_files_keep_theirs(tmp_path):
    mask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "new.json", "{}")
        assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o644  # mkstemp alone gives 0o600
        (tmp_path / "kept.json").write_text("{}")
        os.chmod(tmp_path / "kept.json", 0o640)
        write_text_atomic(tmp_path / "kept.json", "[]")
        assert (tmp_path / "kept.json").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(mask)


@pytest.mark.parametrize(
    ("make", "target", "reason"),
    [
        (lambda d: (d / "a_file").write_text("x"), "a_file/preds.json", "a_file is a file, not a folder"),
        (lambda d: (d / "a_file").write_text("x"), "a_file/deeper/preds.json", "is a file, not a folder"),
        (lambda d: (d / "a_folder").mkdir(), "a_folder", "it is a folder"),
    ],
    ids=["parent is a file", "ancestor is a file", "target is a folder"],
)
def test_unwritable_targets_are_usage_errors(tmp_path, make, target, reason):
    make(tmp_path)
    with pytest.raises(UsageError) as info:
        write_text_atomic(tmp_path / target, "x")
    assert info.value.exit_code == ExitCode.USAGE
    assert str(tmp_path / target) in str(info.value) and reason in str(info.value)


def test_a_pseudo_filesystem_that_refuses_files_is_a_usage_error():
    with pytest.raises(UsageError, match=r"/proc/facekp-test\.json: cannot write output"):
        write_text_atomic("/proc/facekp-test.json", "x")


WRITER = """
import sys, time
from facekp_cli.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp, open(tmp, "w") as fh:
    fh.write("partial"); fh.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["Ctrl-C", "kill -9"])
def test_a_process_killed_while_writing_leaves_the_old_file(tmp_path, sig):
    target = tmp_path / "preds.json"
    target.write_text("old")
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # even when run in the background
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        time.sleep(0.1)
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert target.read_text() == "old"
    if sig == signal.SIGINT:
        assert leftovers(tmp_path) == []  # Ctrl-C unwinds and removes the temporary file
    else:
        # kill -9 cannot clean up: a hidden temporary may stay, but never in the output's place
        assert all(name.startswith(".preds.json.") for name in leftovers(tmp_path))


# --- through the command line --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "out", "reason"),
    [
        (lambda d: (d / "notes.txt").write_text("x"), "notes.txt/preds.json", "is a file, not a folder"),
        (lambda d: (d / "outdir").mkdir(), "outdir", "it is a folder"),
    ],
    ids=["parent is a file", "out is a folder"],
)
def test_infer_to_an_unwritable_path_is_one_line(tmp_path, tiny_checkpoint, face_png, make, out, reason):
    make(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEKP_")}
    proc = subprocess.run(
        [FACEKP, "infer", "--no-detect", str(face_png), "--ckpt", str(tiny_checkpoint), "--out", out],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("facekp: error:")]
    assert len(errors) == 1 and reason in errors[0] and out in errors[0]
    assert "Traceback" not in proc.stderr
