"""Importers: small Kaggle and iBUG files made here, converted through the CLI."""

from __future__ import annotations

import csv

import numpy as np
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.data.format import read_split
from facekp_cli.data.images import decode_image
from facekp_cli.data.importers import KAGGLE_COLUMNS
from facekp_cli.data.validate import validate_dataset
from facekp_cli.errors import ExitCode
from facekp_cli.keypoints import NAMES

runner = CliRunner()
KAGGLE_NAMES = sorted({c for cols in KAGGLE_COLUMNS for c in cols})


def _kaggle_row(points: dict[str, tuple[float, float]], pixels: str) -> dict[str, str]:
    row = {f"{n}_{a}": "" for n in KAGGLE_NAMES for a in "xy"}
    for name, (x, y) in points.items():
        row[f"{name}_x"], row[f"{name}_y"] = str(x), str(y)
    row["Image"] = pixels
    return row


def test_kaggle_maps_subject_view_to_image_view(tmp_path):
    # A subject's-view face: the subject's left eye is on the image's right (x = 66).
    full = {
        "left_eye_center": (66.0, 38.0),
        "right_eye_center": (30.0, 37.0),
        "left_eye_inner_corner": (59.0, 39.0),
        "left_eye_outer_corner": (73.0, 39.0),
        "right_eye_inner_corner": (37.0, 38.0),
        "right_eye_outer_corner": (23.0, 38.0),
        "left_eyebrow_inner_end": (56.0, 29.0),
        "left_eyebrow_outer_end": (80.0, 31.0),
        "right_eyebrow_inner_end": (40.0, 29.0),
        "right_eyebrow_outer_end": (16.0, 30.0),
        "nose_tip": (48.0, 62.0),
        "mouth_left_corner": (63.0, 76.0),
        "mouth_right_corner": (33.0, 76.0),
        "mouth_center_top_lip": (48.0, 72.0),
        "mouth_center_bottom_lip": (48.0, 82.0),
    }
    pixels = " ".join(str(v % 256) for v in range(96 * 96))
    partial = {
        k: v for k, v in full.items() if k in ("left_eye_center", "right_eye_center", "mouth_center_top_lip")
    }
    rows = [_kaggle_row(full, pixels), _kaggle_row(partial, pixels), _kaggle_row(full, "1 2 3")]
    path = tmp_path / "training.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*rows[0]])
        writer.writeheader()
        writer.writerows(rows)

    out = tmp_path / "kaggle"
    result = runner.invoke(
        app, ["data", "import", "kaggle", str(path), "--out", str(out), "--test-fraction", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "Skipped 1" in result.output and "training.csv:4" in result.output
    split = read_split(out / "train")
    assert len(split) == 2
    by_name = {n: split.keypoints[i] for i, n in enumerate(split.filenames)}
    first, second = by_name["00001.png"], by_name["00002.png"]
    idx = {name: i for i, name in enumerate(NAMES)}
    assert tuple(first[idx["right_pupil"]]) == (66.0, 38.0)
    assert tuple(first[idx["left_pupil"]]) == (30.0, 37.0)
    assert tuple(first[idx["left_eyebrow_outer"]]) == (16.0, 30.0)
    assert tuple(first[idx["mouth_left"]]) == (33.0, 76.0)
    assert tuple(first[idx["mouth_center"]]) == (48.0, 77.0)  # mean of top and bottom lip
    assert np.isfinite(second[:, 0]).sum() == 2  # partly labelled row kept; one lip point is not a centre
    assert np.isnan(second[idx["mouth_center"]]).all()
    image = decode_image(split.image_path(0))
    assert image.shape == (96, 96, 3) and image[0, 5, 0] == 5
    assert validate_dataset(out).ok


def test_kaggle_rejects_a_file_without_labels(tmp_path):
    path = tmp_path / "test.csv"
    path.write_text("ImageId,Image\n1,0 0 0\n")
    result = runner.invoke(app, ["data", "import", "kaggle", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == ExitCode.DATA and "no keypoint columns" in result.output


def _write_pts(path, points):
    lines = ["version: 1", f"n_points: {len(points)}", "{", *(f"{x:.3f} {y:.3f}" for x, y in points), "}"]
    path.write_text("\n".join(lines) + "\n")


def test_ibug_crops_faces_and_shifts_labels(tmp_path):
    import cv2

    src = tmp_path / "300w" / "afw"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    cv2.imwrite(str(src / "photo.png"), photo)
    faces = []
    for k, (cx, cy) in enumerate([(120, 150), (290, 140)]):
        pts = np.column_stack([cx + rng.uniform(-40, 40, 68), cy + rng.uniform(-50, 50, 68)])
        pts[36:42, 0] -= 60  # image-left eye region well left of the right one
        pts[42:48, 0] += 60
        pts[[17, 36, 39, 48]] -= [10, 0]
        faces.append(pts)
        _write_pts(src / f"photo_{k + 1}.pts", pts)
    _write_pts(src / "orphan.pts", faces[0])  # no image beside it
    (src / "broken.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n}\n")
    cv2.imwrite(str(src / "broken.png"), photo)

    out = tmp_path / "ibug"
    result = runner.invoke(
        app, ["data", "import", "ibug", str(tmp_path / "300w"), "--out", str(out), "--test-fraction", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "Skipped 2" in result.output
    split = read_split(out / "train")
    assert sorted(split.filenames) == ["afw__photo_1.png", "afw__photo_2.png"]
    for i, name in enumerate(split.filenames):
        pts68 = faces[int(name[-5]) - 1] - 0.5  # 1-based .pts -> pixel-corner origin
        crop = decode_image(split.image_path(i))
        x0 = int(np.floor(pts68[:, 0].min() - 0.2 * np.ptp(pts68, axis=0).max()))
        y0 = int(np.floor(pts68[:, 1].min() - 0.45 * np.ptp(pts68, axis=0).max()))
        x0, y0 = max(0, x0), max(0, y0)
        expected_pupil = pts68[36:42].mean(axis=0) - (x0, y0)
        np.testing.assert_allclose(split.keypoints[i][5], expected_pupil, atol=1e-3)
        np.testing.assert_allclose(split.keypoints[i][12], pts68[[62, 66]].mean(axis=0) - (x0, y0), atol=1e-3)
        # the crop's pixels are the photo's pixels at the shifted position
        assert np.array_equal(crop[0, 0], photo[y0, x0, ::-1])
    assert validate_dataset(out).ok
