"""`facekp infer` end to end through the CLI: formats, failures, schema, atomic output, --detect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.errors import ExitCode
from facekp_cli.keypoints import NAMES


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def mixed_folder(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One face image saved in every awkward way decode_image supports, plus one corrupt file."""
    from PIL import Image

    source = Image.open(next(iter(sorted((tiny_dataset / "test" / "images").iterdir())))).convert("RGB")
    folder = tmp_path_factory.mktemp("mixed")
    source.save(folder / "rgb.jpg", quality=95)
    source.resize((150, 97)).save(folder / "wide.png")
    source.convert("L").save(folder / "gray.png")
    rgba = source.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(folder / "rgba.png")
    source.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    deep = (np.asarray(source.convert("L"), np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(folder / "deep16.png")
    assert Image.open(folder / "deep16.png").mode.startswith("I")
    source.convert("CMYK").save(folder / "cmyk.jpg")
    rotated = source.resize((120, 80))
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees: 80 wide, 120 high
    rotated.save(folder / "exif_rotated.jpg", exif=exif)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (folder / "notes.txt").write_text("not an image, ignored in folders")
    return folder


def test_mixed_folder_reports_the_corrupt_file_and_validates(mixed_folder, facekp_checkpoint, tmp_path):
    import jsonschema

    from facekp_cli.predict.output import load_schema

    out = tmp_path / "preds.json"
    result = invoke(
        "infer", "--no-detect", mixed_folder, "--ckpt", facekp_checkpoint, "--out", out, "--batch-size", 3
    )
    assert result.exit_code == ExitCode.PARTIAL, result.output
    assert "broken.jpg" in result.stderr
    payload = json.loads(out.read_text())
    jsonschema.validate(payload, load_schema())
    entries = {Path(e["path"]).name: e for e in payload["images"]}
    assert set(entries) == {
        "rgb.jpg", "wide.png", "gray.png", "rgba.png", "palette.png", "deep16.png", "cmyk.jpg",
        "exif_rotated.jpg", "broken.jpg",
    }  # fmt: skip
    assert "broken.jpg" in entries["broken.jpg"]["error"] and "points" not in entries["broken.jpg"]
    assert {k: payload["summary"][k] for k in ("images", "failed")} == {"images": 9, "failed": 1}
    assert (entries["exif_rotated.jpg"]["width"], entries["exif_rotated.jpg"]["height"]) == (80, 120)
    assert (entries["wide.png"]["width"], entries["wide.png"]["height"]) == (150, 97)
    assert payload["keypoint_names"] == list(NAMES)
    assert payload["model"]["kind"] == "checkpoint" and len(payload["model"]["sha256"]) == 64
    for name, entry in entries.items():
        if name == "broken.jpg":
            continue
        points = np.array([[entry["points"][n]["x"], entry["points"][n]["y"]] for n in NAMES])
        assert list(entry["points"]) == list(NAMES)
        # face-shaped output inside the displayed frame: eyes above the mouth
        assert (points[:, 0] > -0.1 * entry["width"]).all() and (points[:, 0] < 1.1 * entry["width"]).all()
        assert points[NAMES.index("left_pupil"), 1] < points[NAMES.index("mouth_center"), 1]

    # the same picture in different modes gets nearly the same (relative) points
    def relative(name):
        e = entries[name]
        xy = np.array([[e["points"][n]["x"], e["points"][n]["y"]] for n in NAMES])
        return xy / [e["width"], e["height"]]

    assert np.abs(relative("rgb.jpg") - relative("rgba.png")).max() < 0.02


def test_csv_output_round_trips_through_eval(tiny_dataset, facekp_checkpoint, tmp_path):
    test_dir = tiny_dataset / "test"
    preds = tmp_path / "preds.csv"
    result = invoke(
        "-q", "infer", "--no-detect", test_dir / "images", "--ckpt", facekp_checkpoint, "--out", preds
    )
    assert result.exit_code == 0, result.output
    from facekp_cli.data.format import read_gt_csv

    names, points = read_gt_csv(preds)
    assert names == sorted(read_gt_csv(test_dir / "gt.csv")[0])
    assert np.isfinite(points).all()
    via_csv = invoke("eval", "--pred", preds, "--gt", test_dir / "gt.csv", "--json")
    via_ckpt = invoke("eval", "--ckpt", facekp_checkpoint, "--data", test_dir, "--json")
    assert via_csv.exit_code == 0 and via_ckpt.exit_code == 0, via_csv.output + via_ckpt.output
    a, b = json.loads(via_csv.stdout)["metrics"], json.loads(via_ckpt.stdout)["metrics"]
    for key in ("mse100", "nme", "auc10", "pck05", "pck10", "fr10"):
        assert a[key] == pytest.approx(b[key], abs=1e-3), key


def test_failure_before_writing_leaves_the_previous_output(mixed_folder, facekp_checkpoint, tmp_path):
    out = tmp_path / "preds.json"
    out.write_text("previous run\n")
    missing_model = invoke(
        "infer", "--no-detect", mixed_folder, "--ckpt", tmp_path / "nope.ckpt", "--out", out
    )
    assert missing_model.exit_code == ExitCode.MODEL and "nope.ckpt" in missing_model.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = invoke("infer", "--no-detect", empty, "--ckpt", facekp_checkpoint, "--out", out)
    assert no_images.exit_code == ExitCode.DATA and str(empty) in no_images.stderr
    assert out.read_text() == "previous run\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_glob_recursive_draw_and_csv_names(tiny_dataset, facekp_checkpoint, tmp_path):
    nested = tmp_path / "photos" / "a" / "b"
    nested.mkdir(parents=True)
    for image in sorted((tiny_dataset / "test" / "images").glob("*.jpg"))[:3]:  # the pattern's kind only
        shutil.copy(image, nested / image.name)
    out, drawn = tmp_path / "p.csv", tmp_path / "drawn"
    pattern = str(tmp_path / "photos" / "**" / "*.jpg")
    result = invoke(
        "infer",
        "--no-detect",
        pattern,
        "--recursive",
        "--ckpt",
        facekp_checkpoint,
        "-o",
        out,
        "--draw",
        drawn,
    )
    assert result.exit_code == 0, result.output
    from facekp_cli.data.format import read_gt_csv

    names, _ = read_gt_csv(out)
    assert names == [f"a/b/{p.name}" for p in sorted(nested.iterdir())]
    assert sorted(p.relative_to(drawn).as_posix() for p in drawn.rglob("*.jpg")) == names
    flat = invoke(
        "infer", "--no-detect", tmp_path / "photos", "--ckpt", facekp_checkpoint, "-o", tmp_path / "x.json"
    )
    assert flat.exit_code == ExitCode.DATA and "--recursive" in flat.stderr


def test_detect_finds_the_face_in_a_real_photo(facekp_checkpoint, tmp_path):
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        photo = Path(fh.name)
    out = tmp_path / "faces.json"
    result = invoke("infer", photo, "--detect", "--ckpt", facekp_checkpoint, "-o", out, "--draw", tmp_path)
    assert result.exit_code == 0, result.output
    import jsonschema

    from facekp_cli.predict.output import load_schema

    payload = json.loads(out.read_text())
    jsonschema.validate(payload, load_schema())
    (entry,) = payload["images"]
    assert (entry["width"], entry["height"]) == (512, 600)
    assert len(entry["faces"]) == 1
    box = entry["faces"][0]["box"]
    # the face in this portrait is in the upper middle of the picture
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert 180 < centre[0] < 340 and 120 < centre[1] < 320 and 120 < box["width"] < 350
    points = entry["faces"][0]["points"]
    for name in ("left_pupil", "right_pupil", "nose_tip"):
        assert box["x"] <= points[name]["x"] <= box["x"] + box["width"]
        assert box["y"] <= points[name]["y"] <= box["y"] + box["height"]
    assert (tmp_path / "grace_hopper.jpg").is_file()
