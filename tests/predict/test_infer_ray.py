"""`facekp infer --engine ray` on a real local Ray cluster (2 CPUs, started once for this module):
the same numbers as the single-process path, corrupt files reported, S3 input through moto's
server, --resume, and a model actor killed mid-job with the job still completing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from facekp_cli.errors import ExitCode, UsageError
from facekp_cli.settings import load_settings

ray = pytest.importorskip("ray")  # in requirements.lock: present wherever `make test` runs

FACEKP = str(Path(sys.executable).parent / "facekp")
ACTOR = "MapBatches(_ModelActor)"


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of 2 CPUs for every test here (starting one costs seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def settings(**extra):
    # two actors of 0.75 CPU leave half a CPU of the 2 for decoding and writing tasks
    # face crops, each used whole (the finder misses some synthetic crops; finding faces is
    # tests/predict/test_auto_detect.py's subject)
    values = {"ray.pool_size": 2, "ray.cpus_per_actor": 0.75, "infer.batch_size": 8, "infer.detect": False}
    values.update(extra)
    return load_settings(overrides=values, environ={})


@pytest.fixture(scope="module")
def images(tiny_dataset, tmp_path_factory) -> Path:
    """The tiny set's 48 images in one folder, and one corrupt JPEG."""
    folder = tmp_path_factory.mktemp("ray_images")
    for split in ("train", "test"):
        for path in (tiny_dataset / split / "images").iterdir():
            shutil.copy(path, folder / path.name)
    (folder / "zz_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


def shard_entries(out: Path) -> list[dict]:
    entries = []
    for shard in sorted(out.glob("part-*.jsonl")):
        lines = [json.loads(line) for line in shard.read_text().splitlines()]
        assert lines[0]["schema"] == "facekp.predictions.jsonl" and "summary" in lines[-1]
        entries += [line for line in lines if "path" in line]
    return entries


def points(entry: dict) -> np.ndarray:
    return np.array([[p["x"], p["y"]] for p in entry["points"].values()])


def local_predictions(images: Path, ckpt: Path, out: Path) -> dict[str, dict]:
    from facekp_cli.services import infer

    infer.run(settings(), [images], out, ckpt=ckpt, fmt="jsonl")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    return {e["name"]: e for e in lines if "path" in e}


def test_ray_matches_the_single_process_path_and_reports_the_corrupt_file(
    ray_cluster, images, facekp_checkpoint, tmp_path
):
    from facekp_cli.services import infer_ray

    expected = local_predictions(images, facekp_checkpoint, tmp_path / "local.jsonl")
    out = tmp_path / "ray"
    result = infer_ray.run(settings(), [images], out, ckpt=facekp_checkpoint)

    assert result.images == 49 and result.partial
    assert [f.path for f in result.failed] == [str(images / "zz_corrupt.jpg")]
    assert "zz_corrupt.jpg" in result.failed[0].error
    entries = {e["name"]: e for e in shard_entries(out)}
    assert sorted(entries) == sorted(expected)  # every file once, none lost or doubled
    assert entries["zz_corrupt.jpg"]["error"] == expected["zz_corrupt.jpg"]["error"]
    worst = max(
        np.abs(points(entries[name]) - points(expected[name])).max()
        for name in expected
        if name != "zz_corrupt.jpg"
    )
    assert worst <= 1e-3, f"Ray and the local path differ by {worst} px"
    for name, entry in entries.items():  # the same entry schema: sizes, names, keys
        assert set(entry) == set(expected[name]) and entry.get("width") == expected[name].get("width")

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema"] == "facekp.predictions.manifest" and manifest["format"] == "jsonl"
    assert sorted(manifest["shards"]) == sorted(p.name for p in out.glob("part-*.jsonl"))
    assert manifest["summary"]["images"] == 49 and manifest["summary"]["failed"] == 1
    assert manifest["failed"][0]["path"] == str(images / "zz_corrupt.jpg")
    assert manifest["model"]["sha256"] == result.model["sha256"]


def test_parquet_shards_hold_the_same_points(ray_cluster, images, facekp_checkpoint, tmp_path):
    import pyarrow.parquet as pq

    from facekp_cli.keypoints import NAMES
    from facekp_cli.services import infer_ray

    expected = local_predictions(images, facekp_checkpoint, tmp_path / "local.jsonl")
    out = tmp_path / "pq"
    infer_ray.run(settings(**{"ray.format": "parquet"}), [images], out, ckpt=facekp_checkpoint)
    table = [row for shard in sorted(out.glob("part-*.parquet")) for row in pq.read_table(shard).to_pylist()]
    assert len(table) == 49
    for row in table:
        if row["error"]:
            assert row["name"] == "zz_corrupt.jpg"
            continue
        got = np.array([[row[f"{n}_x"], row[f"{n}_y"]] for n in NAMES])
        assert np.abs(got - points(expected[row["name"]])).max() <= 1e-3


def test_resume_skips_the_files_of_shards_already_written(ray_cluster, images, facekp_checkpoint, tmp_path):
    from facekp_cli.services import infer_ray

    first = sorted(images.glob("*.jpg"))[:10]
    out = tmp_path / "out"
    infer_ray.run(settings(), [str(p) for p in first], out, ckpt=facekp_checkpoint)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.jsonl")}

    with pytest.raises(UsageError, match="holds shards of an earlier run; add --resume"):
        infer_ray.run(settings(), [images], out, ckpt=facekp_checkpoint)
    again = infer_ray.run(settings(), [images], out, ckpt=facekp_checkpoint, resume=True)
    assert again.already_done == 10 and again.images == 39
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.jsonl") if p.name in before} == before
    names = [e["name"] for e in shard_entries(out)]
    assert len(names) == len(set(names)) == 49
    assert sorted(json.loads((out / "manifest.json").read_text())["shards"]) == sorted(
        p.name for p in out.glob("part-*.jsonl")
    )


def test_output_folder_with_other_files_is_refused(ray_cluster, images, facekp_checkpoint, tmp_path):
    from facekp_cli.services import infer_ray

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty and not a facekp shard folder"):
        infer_ray.run(settings(), [images], tmp_path, ckpt=facekp_checkpoint)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.fixture()
def s3_bucket(s3_server):
    """moto's S3 server (tests/conftest.py) with a bucket of photos; returns its boto3 client."""
    _endpoint, client = s3_server
    client.create_bucket(Bucket="facekp-photos")
    return client


def test_s3_prefix_input_through_moto(ray_cluster, s3_bucket, images, facekp_checkpoint, tmp_path):
    from facekp_cli.services import infer_ray

    chosen = [*sorted(images.glob("*.jpg"))[:12], images / "zz_corrupt.jpg"]
    for path in chosen:
        s3_bucket.upload_file(str(path), "facekp-photos", f"camera/day1/{path.name}")
    s3_bucket.put_object(Bucket="facekp-photos", Key="camera/day1/readme.md", Body=b"not an image")
    local_dir = tmp_path / "local_copy"
    local_dir.mkdir()
    for path in chosen:
        shutil.copy(path, local_dir / path.name)
    expected = local_predictions(local_dir, facekp_checkpoint, tmp_path / "local.jsonl")

    result = infer_ray.run(
        settings(), ["s3://facekp-photos/camera"], tmp_path / "out", ckpt=facekp_checkpoint
    )
    entries = {e["name"]: e for e in shard_entries(tmp_path / "out")}
    assert sorted(entries) == sorted(f"day1/{p.name}" for p in chosen)  # names under the prefix
    assert entries["day1/zz_corrupt.jpg"]["path"] == "s3://facekp-photos/camera/day1/zz_corrupt.jpg"
    assert [f.path for f in result.failed] == ["s3://facekp-photos/camera/day1/zz_corrupt.jpg"]
    for name, entry in entries.items():
        if "error" not in entry:
            assert np.abs(points(entry) - points(expected[name.split("/")[-1]])).max() <= 1e-3


def _actor_pids() -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if ACTOR.encode() in cmdline:
                found.add(int(entry))
    return found


def test_a_model_actor_killed_mid_job_is_restarted_and_the_job_completes(
    ray_cluster, images, facekp_checkpoint, tmp_path
):
    from facekp_cli.services import infer_ray

    many = tmp_path / "many"
    many.mkdir()
    readable = [p for p in sorted(images.iterdir()) if p.name != "zz_corrupt.jpg"]  # .jpg and .png
    for copy in range(4):  # 192 readable images
        for path in readable:
            shutil.copy(path, many / f"{copy}_{path.name}")
    total = 4 * len(readable)
    assert total == 192
    out, outcome = tmp_path / "out", {}

    def job() -> None:
        try:
            outcome["result"] = infer_ray.run(
                settings(**{"infer.batch_size": 4}), [many], out, ckpt=facekp_checkpoint, progress_bars=False
            )
        except BaseException as exc:  # surfaced by the assertions below
            outcome["error"] = exc

    before = _actor_pids()
    worker = threading.Thread(target=job)
    worker.start()
    deadline = time.monotonic() + 120
    while not (_actor_pids() - before) and time.monotonic() < deadline and worker.is_alive():
        time.sleep(0.05)
    victims = sorted(_actor_pids() - before)
    assert victims and worker.is_alive(), "no model actor seen while the job ran"
    os.kill(victims[0], signal.SIGKILL)
    worker.join(timeout=600)
    assert "error" not in outcome, outcome.get("error")  # the job completed
    result = outcome["result"]
    names = [e["name"] for e in shard_entries(out)]
    lost = [f for f in result.failed if "lost by the Ray job" in f.error]
    # Ray re-ran the killed actor's batches: every file written exactly once, none failed. (Were
    # one lost, infer_ray checks every file against the shards and reports it, never silently.)
    assert not lost and not result.failed and result.images == total
    assert len(names) == len(set(names)) == total
    again = infer_ray.run(settings(), [many], out, ckpt=facekp_checkpoint, resume=True, progress_bars=False)
    assert again.already_done == total and again.images == 0
    final = [e["name"] for e in shard_entries(out)]
    assert len(final) == len(set(final)) == total


def test_cli_reports_the_corrupt_file_and_exits_4(ray_cluster, images, facekp_checkpoint, tmp_path):
    """`facekp infer --engine ray` as a process, joining the running cluster through RAY_ADDRESS."""
    args = [FACEKP, "--set", "ray.pool_size=1", "infer", str(images), "--engine", "ray", "--no-detect"]
    args += ["--ckpt", str(facekp_checkpoint), "--out", str(tmp_path / "out")]
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_ADDRESS": ray_cluster}
    )
    assert done.returncode == ExitCode.PARTIAL, done.stderr[-3000:]
    assert f"facekp: skipped {images / 'zz_corrupt.jpg'}" in done.stderr
    assert "1 of 49 files could not be read" in done.stderr
    assert "wrote 1 jsonl shards" in done.stdout or "jsonl shards" in done.stdout
    assert "facekp infer: 49 images to do on Ray" in done.stderr  # piped: plain progress lines
