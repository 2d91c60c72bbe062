"""`facekp data validate` and `facekp data show` through the CLI, on real files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.data.format import read_gt_csv, write_gt_csv
from facekp_cli.data.images import decode_image
from facekp_cli.errors import ExitCode

runner = CliRunner()


@pytest.fixture()
def dataset_copy(tiny_dataset, tmp_path):
    return shutil.copytree(tiny_dataset, tmp_path / "faces_data")


def test_validate_passes_on_a_synthetic_set(tiny_dataset):
    result = runner.invoke(app, ["data", "validate", str(tiny_dataset), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["errors"] == 0 and report["warnings"] == 0
    assert {s["split"]: s["rows"] for s in report["splits"]} == {"train": 36, "test": 12}
    table = runner.invoke(app, ["data", "validate", str(tiny_dataset)])
    assert table.exit_code == 0 and "OK" in table.output and "train" in table.output


def test_validate_finds_every_kind_of_problem(dataset_copy):
    train = dataset_copy / "train"
    names, points = read_gt_csv(train / "gt.csv")
    images = train / "images"
    (images / names[0]).unlink()  # missing file
    (images / names[1]).write_bytes(b"not an image")  # undecodable
    points[2, 3] = (5000.0, 10.0)  # several image sides away: a typo, not a label
    points[4, 12] = (10.0, -4.0)  # just outside the frame: a label (a cut chin), a warning
    points[3] = points[3][[3, 2, 1, 0, 9, 8, 7, 6, 5, 4, 10, 13, 12, 11]]  # subject's-view labels
    shutil.copy(images / names[4], images / "extra.jpg")  # no row
    (images / "notes.txt").write_text("hi")
    write_gt_csv(train / "gt.csv", names, points)
    with open(train / "gt.csv", "a") as fh:  # a row escaping images/ and a duplicate row
        fh.write("../evil.jpg" + ",1" * 28 + "\n")
        fh.write(names[5] + ",1" * 28 + "\n")
    shutil.copy(
        dataset_copy / "test" / "images" / read_gt_csv(dataset_copy / "test" / "gt.csv")[0][0],
        images / names[6],
    )  # a test image also in train

    result = runner.invoke(app, ["data", "validate", str(dataset_copy), "--json"])
    assert result.exit_code == ExitCode.FAILURE, result.output
    report = json.loads(result.output)
    kinds = {(i["severity"], i["kind"]) for i in report["issues"]}
    assert {
        ("error", "missing-file"),
        ("error", "undecodable-image"),
        ("error", "absurd-coordinate"),
        ("warning", "outside-frame"),
        ("error", "swapped-left-right"),
        ("error", "bad-row"),
        ("warning", "unlabelled-image"),
        ("warning", "stray-file"),
        ("warning", "train-test-duplicate"),
    } <= kinds
    messages = " ".join(i["message"] for i in report["issues"])
    assert "evil.jpg" in messages and "duplicate filename" in messages
    assert f"{names[3]}" in messages and "subject's view" in messages
    table = runner.invoke(app, ["data", "validate", str(dataset_copy)])
    assert table.exit_code == ExitCode.FAILURE and "error" in table.output


def single_split(dataset_copy):
    """A folder that is one split itself (images/ + gt.csv), as real datasets come, with a mouth
    outside the frame (an upside-down face) and a crossed pair (a heavily rotated one)."""
    split = dataset_copy / "train"
    names, points = read_gt_csv(split / "gt.csv")
    points[0, 11:14, 1] = [-11.0, -7.0, -2.0]
    points[1, [11, 13]] = points[1, [13, 11]]
    write_gt_csv(split / "gt.csv", names, points)
    return split


def test_a_single_split_folder_with_points_outside_the_frame_validates(dataset_copy):
    split = single_split(dataset_copy)
    result = runner.invoke(app, ["data", "validate", str(split), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["errors"] == 0
    assert [s["split"] for s in report["splits"]] == ["train"]
    outside = [i for i in report["issues"] if i["kind"] == "outside-frame"]
    assert len(outside) == 3 and all(i["severity"] == "warning" for i in outside)
    assert "mouth_left" in outside[0]["message"] and "-11.0" in outside[0]["message"]
    assert any(i["kind"] == "crossed-pair" and i["severity"] == "warning" for i in report["issues"])
    table = runner.invoke(app, ["data", "validate", str(split)])
    assert table.exit_code == 0 and "OK" in table.output and "outside the frame" in table.output


def test_show_draws_a_single_split_folder(dataset_copy, tmp_path):
    split = single_split(dataset_copy)
    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["data", "show", str(split), "--n", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert decode_image(out).shape[0] > 0


def test_unparseable_labels_name_the_file_and_line(dataset_copy):
    gt = dataset_copy / "test" / "gt.csv"
    lines = gt.read_text().splitlines()
    lines[2] = lines[2].replace(",", ",x", 1)
    gt.write_text("\n".join(lines) + "\n")
    report = json.loads(runner.invoke(app, ["data", "validate", str(dataset_copy), "--json"]).output)
    assert any(f"{gt}:3" in i["message"] and "not a number" in i["message"] for i in report["issues"])
    gt.write_text("name,a,b\n")
    result = runner.invoke(app, ["data", "validate", str(dataset_copy), "--json"])
    assert result.exit_code == ExitCode.FAILURE
    assert any(i["kind"] == "unreadable-labels" for i in json.loads(result.output)["issues"])


def test_validate_without_a_dataset_is_a_data_error(tmp_path):
    result = runner.invoke(app, ["data", "validate", str(tmp_path / "nope")])
    assert result.exit_code == ExitCode.DATA
    assert "facekp data synth" in result.output


def test_show_draws_a_grid_and_its_augmented_twin(tiny_dataset, tmp_path):
    out = tmp_path / "grid.png"
    result = runner.invoke(app, ["data", "show", str(tiny_dataset), "--n", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    plain = decode_image(out)
    aug_out = tmp_path / "aug.png"
    result = runner.invoke(
        app,
        [
            "data",
            "show",
            str(tiny_dataset),
            "--n",
            "4",
            "--augment",
            "--split",
            "test",
            "--out",
            str(aug_out),
        ],
    )
    assert result.exit_code == 0, result.output
    augmented = decode_image(aug_out)
    assert augmented.shape[1] > plain.shape[1]  # each sample beside its augmented copy
    assert plain.std() > 10  # a picture, not a blank canvas
    again = tmp_path / "again.png"
    runner.invoke(app, ["data", "show", str(tiny_dataset), "--n", "4", "--out", str(again)])
    assert np.array_equal(decode_image(again), plain)  # same seed, same samples


def test_show_flip_swaps_left_and_right_colours(tiny_dataset):
    """Through the same augmentation the preview uses, a flip keeps 'left' points on the image's left."""
    from facekp_cli.data.format import read_split
    from facekp_cli.services.data import _training_augmentation
    from facekp_cli.settings import load_settings

    settings = load_settings(
        overrides={"augment.hflip_p": 1.0, "augment.affine_p": 0.0, "augment.perspective_p": 0.0}, environ={}
    )
    augment = _training_augmentation(settings)
    split = read_split(tiny_dataset / "train")
    _, points = augment(decode_image(split.image_path(0)), split.keypoints[0], 0)
    assert points[4, 0] < points[9, 0]  # left_eye_outer still left of right_eye_outer


def test_show_rejects_a_bad_split(tiny_dataset, tmp_path):
    result = runner.invoke(
        app, ["data", "show", str(tiny_dataset), "--split", "val", "--out", str(tmp_path / "g.png")]
    )
    assert result.exit_code == ExitCode.USAGE
