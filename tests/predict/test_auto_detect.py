"""Photos need no flag (issue 19): `--detect auto` is the default of infer, align and video, the
output says per image what was done; video frame times come from the container; `--draw x.webm`
writes a video a browser plays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from tests.predict.test_finder import needs_yunet, paste
from tests.predict.video_clips import synthetic_faces


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def crop_photo_blank(tiny_dataset, tmp_path_factory) -> Path:
    """crop.png: a synthetic face crop the finder sees; photo.png: the same face small in a wide
    picture; blank.png: a grey picture with no face."""
    from PIL import Image

    from facekp_cli.predict.detect import FaceDetector

    finder = FaceDetector()
    face, points = next((f, p) for f, p in synthetic_faces(tiny_dataset, 12) if finder.detect(f))
    folder = tmp_path_factory.mktemp("auto")
    Image.fromarray(face).save(folder / "crop.png")
    Image.fromarray(paste(face, points, 160, (400, 120))[0]).save(folder / "photo.png")
    Image.fromarray(np.full((300, 400, 3), 128, np.uint8)).save(folder / "blank.png")
    return folder


@needs_yunet
def test_infer_without_a_flag_uses_a_crop_whole_and_searches_a_photo(
    crop_photo_blank, facekp_checkpoint, tmp_path
):
    import jsonschema

    from facekp_cli.predict.output import load_schema

    out = tmp_path / "auto.json"
    result = invoke("infer", crop_photo_blank, "--ckpt", facekp_checkpoint, "-o", out)
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    jsonschema.validate(payload, load_schema())
    assert payload["detect"] == "auto" and payload["finder"]["name"] == "yunet"
    entries = {e["name"]: e for e in payload["images"]}
    assert entries["crop.png"]["mode"] == "crop" and "points" in entries["crop.png"]
    assert entries["photo.png"]["mode"] == "photo" and len(entries["photo.png"]["faces"]) == 1
    box = entries["photo.png"]["faces"][0]["box"]
    assert 400 <= box["x"] + box["width"] / 2 <= 560 and 0.5 <= box["score"] <= 1
    assert (
        entries["blank.png"]["mode"] == "photo" and entries["blank.png"]["faces"] == []
    )  # no face, no points
    assert payload["summary"]["crops"] == 1 and payload["summary"]["faces"] == 2

    forced = tmp_path / "forced.json"
    assert (
        invoke("infer", crop_photo_blank, "--no-detect", "--ckpt", facekp_checkpoint, "-o", forced).exit_code
        == 0
    )
    assert {e["mode"] for e in json.loads(forced.read_text())["images"]} == {"crop"}
    searched = tmp_path / "searched.json"
    assert (
        invoke("infer", crop_photo_blank, "--detect", "--ckpt", facekp_checkpoint, "-o", searched).exit_code
        == 0
    )
    assert {e["mode"] for e in json.loads(searched.read_text())["images"]} == {"photo"}


def test_align_without_a_flag_finds_the_face_in_a_portrait(facekp_checkpoint, tmp_path):
    """Issue 19: `facekp align photo.jpg` used to warp the whole portrait as if it were a face crop."""
    import csv

    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        photo = Path(fh.name)
    rows = {}
    for flag in ("", "--detect"):
        out = tmp_path / (flag or "auto")
        args = ["align", photo, "--ckpt", facekp_checkpoint, "-o", out] + ([flag] if flag else [])
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        with open(out / "transforms.csv", newline="") as fh:
            rows[flag] = list(csv.DictReader(fh))
    assert len(rows[""]) == 1 and rows[""] == rows["--detect"]  # the same face, the same transform


def test_a_blank_video_without_a_flag_gives_no_faces(facekp_checkpoint, tmp_path):
    """Issue 19: a clip of grey frames came back as "40 faces in 1 tracks" with points on nothing."""
    from facekp_cli.video.io import write_video

    clip = write_video(tmp_path / "grey.avi", [np.full((120, 160, 3), 128, np.uint8)] * 12, 10.0)
    out = tmp_path / "grey.jsonl"
    result = invoke("infer", clip, "--ckpt", facekp_checkpoint, "-o", out)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    header, frames, summary = records[0], records[1:-1], records[-1]
    assert header["detect"] is True and header["finder"] in ("yunet", "haar")
    assert len(frames) == 12 and all(f["faces"] == [] for f in frames)
    assert summary["faces"] == 0 and summary["tracks"] == 0


def write_variable_rate_clip(path: Path, times_ms: list[int], size=(64, 48)) -> Path:
    """An MPEG-4 clip in Matroska whose frames sit at the given times (PyAV sets each pts)."""
    import fractions

    av = pytest.importorskip("av", reason="PyAV writes the variable-frame-rate clip")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for t in times_ms:
            frame = av.VideoFrame.from_ndarray(
                np.full((size[1], size[0], 3), t % 255, np.uint8), format="rgb24"
            )
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = t, fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_frame_times_come_from_the_container_not_the_frame_rate(facekp_checkpoint, tmp_path):
    """A phone video's frames are not 1/fps apart: the times are the container's (the One-Euro
    filter runs on them); index / fps would give 0.00, 0.04, 0.08, ..."""
    from facekp_cli.video.io import VideoFrames

    times = [0, 40, 100, 110, 300, 333, 500, 1000]
    clip = write_variable_rate_clip(tmp_path / "vfr.mkv", times)
    with VideoFrames(clip) as frames:
        got = [frame.time_s for frame in frames]
    assert got == pytest.approx([t / 1000 for t in times], abs=1e-3)
    out = tmp_path / "vfr.jsonl"
    assert invoke("infer", clip, "--no-detect", "--ckpt", facekp_checkpoint, "-o", out).exit_code == 0
    written = [json.loads(line) for line in out.read_text().splitlines()][1:-1]
    assert [r["time_s"] for r in written] == pytest.approx([t / 1000 for t in times], abs=1e-3)


def test_draw_webm_writes_a_vp8_video_that_reads_back(tiny_dataset, facekp_checkpoint, tmp_path):
    import cv2

    from facekp_cli.video.io import write_video

    face = synthetic_faces(tiny_dataset, 1)[0][0]
    clip = write_video(tmp_path / "face.avi", [cv2.resize(face, (96, 96))] * 8, 25.0)
    drawn = tmp_path / "drawn.webm"
    result = invoke("infer", clip, "--no-detect", "--ckpt", facekp_checkpoint, "-o", tmp_path / "p.jsonl",
                    "--draw", drawn)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert drawn.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # EBML: a Matroska/WebM file
    capture = cv2.VideoCapture(str(drawn))
    frames = 0
    while capture.read()[0]:
        frames += 1
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    assert (frames, fourcc) == (8, "VP80")
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (96, 96)
