"""moto's S3 server (a separate process on loopback) SIGKILLed in the middle of `facekp data push`:
exit 5 with one line, the local DVC cache still sound (every object's bytes match its hash), a rerun
against the restarted server completes, and a later pull into an empty workspace is byte-identical.
The restarted moto server starts empty, as a replaced bucket would: the rerun must not trust
anything it believed was already uploaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from live_services import free_port, kill_hard, start_moto

FACEKP = str(Path(sys.executable).with_name("facekp"))
BUCKET = "facekp-data"

pytestmark = pytest.mark.slow


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def _cache_is_sound(repo: Path) -> int:
    """Every object in the DVC cache holds the bytes its md5 name says; returns how many there are."""
    objects = [p for p in (repo / ".dvc" / "cache").rglob("*") if p.is_file()]
    for path in objects:
        expected = path.parent.name + path.name.removesuffix(".dir")
        assert hashlib.md5(path.read_bytes()).hexdigest() == expected, f"corrupt cache object {path}"
    return len(objects)


def _s3(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip


def _count(endpoint: str) -> int:
    try:
        return _s3(endpoint).list_objects_v2(Bucket=BUCKET).get("KeyCount", 0)
    except Exception:
        return 0


def test_s3_server_killed_mid_push_then_rerun_and_pull(tmp_path):
    pytest.importorskip("boto3")
    repo = tmp_path / "project"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([str(Path(sys.executable).with_name("dvc")), "init", "-q"], cwd=repo, check=True)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACEKP_", "AWS_"))}
    env.update({
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint, "AWS_MAX_ATTEMPTS": "2", "DVC_NO_ANALYTICS": "1",
        "FACEKP_DATA__REMOTE": f"s3://{BUCKET}/datasets", "OMP_NUM_THREADS": "1",
    })  # fmt: skip

    def facekp(*args: str, **kw):
        return subprocess.run(
            [FACEKP, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=900, **kw
        )

    made = facekp("data", "synth", "--n", "800", "--workers", "1", "--out", "faces_data")
    assert made.returncode == 0, made.stderr
    before = _tree(repo / "faces_data")

    server = start_moto(tmp_path / "moto", port)
    _s3(endpoint).create_bucket(Bucket=BUCKET)
    push = subprocess.Popen([FACEKP, "data", "push"], cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while _count(endpoint) < 50:  # part of the way through the upload
            assert push.poll() is None, f"push ended first: {push.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        kill_hard(server)
    _, err = push.communicate(timeout=900)
    assert push.returncode == 5, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facekp: error:") and "Traceback" not in err, err[-3000:]
    assert _cache_is_sound(repo) > 800

    server = start_moto(tmp_path / "moto", port)  # back, but empty (moto keeps nothing)
    try:
        _s3(endpoint).create_bucket(Bucket=BUCKET)
        rerun = facekp("data", "push")
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert _count(endpoint) >= 800
        shutil.rmtree(repo / "faces_data")
        shutil.rmtree(repo / ".dvc" / "cache")
        pulled = facekp("data", "pull")
        assert pulled.returncode == 0, pulled.stderr[-3000:]
        assert _tree(repo / "faces_data") == before
        assert _cache_is_sound(repo) > 800
    finally:
        kill_hard(server)
