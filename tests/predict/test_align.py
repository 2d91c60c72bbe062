"""`facekp align`: the similarity transform, its inverse, the template, and the verb over a folder."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from facekp_cli.apps.align import TEMPLATE, align_face, anchors, invert, similarity, template_points
from facekp_cli.cli.main import app
from facekp_cli.errors import ExitCode


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A 2x3 affine matrix applied to points (N, 2)."""
    points = np.asarray(points, np.float64)
    return points @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def similarity_matrix(scale: float, angle_deg: float, shift) -> np.ndarray:
    a = np.radians(angle_deg)
    return np.array(
        [[scale * np.cos(a), -scale * np.sin(a), shift[0]], [scale * np.sin(a), scale * np.cos(a), shift[1]]]
    )


@pytest.mark.parametrize(
    ("scale", "angle", "shift"), [(1.0, 0.0, (0, 0)), (0.37, 33.0, (12.5, -40)), (2.5, -170, (3, 9))]
)
def test_similarity_recovers_an_exact_transform_and_inverts(scale, angle, shift):
    rng = np.random.default_rng(1)
    source = rng.uniform(0, 200, size=(6, 2))
    truth = similarity_matrix(scale, angle, shift)
    found = similarity(source, apply(truth, source))
    assert np.allclose(found, truth, atol=1e-9)
    back = apply(invert(found), apply(found, source))
    assert np.allclose(back, source, atol=1e-9)


def test_a_mirrored_point_set_still_gets_a_rotation_never_a_reflection():
    source = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 5.0]])
    mirrored = source * [-1, 1]
    linear = similarity(source, mirrored)[:, :2]
    assert np.linalg.det(linear) > 0


def face_on_template(matrix: np.ndarray) -> np.ndarray:
    """14 points whose eye and mouth centres sit exactly on `matrix` applied to the 112-px template."""
    points = np.full((14, 2), np.nan)
    left, right, mouth = TEMPLATE * 112
    eye, lip = np.array([6.0, 0.0]), np.array([15.0, 0.0])
    points[4], points[6] = left - eye, left + eye  # eye corners around the eye centre
    points[7], points[9] = right - eye, right + eye
    points[11], points[12], points[13] = mouth - lip, mouth, mouth + lip
    return apply(matrix, points)


@pytest.mark.parametrize("margin", [0.0, 0.25])
def test_a_rolled_shrunken_face_lands_on_the_template(margin):
    # the face in the photo: the template turned 25 degrees, at 1.7x, somewhere else
    photo_from_template = similarity_matrix(1.7, 25.0, (300.0, 80.0))
    points = face_on_template(photo_from_template)
    alignment = align_face(points, 112, margin)
    assert np.allclose(apply(alignment.matrix, anchors(points)), template_points(112, margin), atol=1e-6)
    assert alignment.angle_deg == pytest.approx(25.0)  # turned back by the face's roll
    assert alignment.scale == pytest.approx(1 / 1.7 / (1 + 2 * margin))
    assert np.allclose(alignment.matrix @ np.vstack([alignment.inverse, [0, 0, 1]]), np.eye(3)[:2], atol=1e-9)


def test_margin_zero_is_the_arcface_layout_and_a_margin_shrinks_it_about_the_centre():
    assert np.allclose(
        template_points(112, 0.0), [[38.2946, 51.6963], [73.5318, 51.5014], [56.1396, 92.2848]]
    )
    wide = template_points(200, 0.5)
    assert np.allclose(wide, 100 + (template_points(200, 0.0) - 100) / 2)


def test_a_face_without_eyes_cannot_be_aligned():
    points = face_on_template(similarity_matrix(1, 0, (0, 0)))
    points[[4, 6]] = np.nan
    assert align_face(points, 112, 0.0) is None


def test_align_writes_crops_and_a_csv_whose_inverse_maps_back(tiny_dataset, facekp_checkpoint, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(tiny_dataset / "test" / "images", images)
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "aligned"
    # --no-detect: these are face crops (auto would also search them; YuNet misses 2 of the 12)
    args = (
        "align",
        images,
        "--no-detect",
        "--ckpt",
        facekp_checkpoint,
        "-o",
        out,
        "--size",
        96,
        "--margin",
        0.2,
    )
    result = invoke(*args)
    assert result.exit_code == ExitCode.PARTIAL, (
        result.output
    )  # the broken file is reported, the rest written
    assert "broken.jpg" in result.stderr
    count = len(list((tiny_dataset / "test" / "images").iterdir()))
    with open(out / "transforms.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == count and f"wrote {count} crops of {count + 1} images" in result.stdout
    from PIL import Image

    for row in rows:
        assert Image.open(out / row["crop"]).size == (96, 96)
        forward = np.array([float(row[k]) for k in ("m00", "m01", "m02", "m10", "m11", "m12")]).reshape(2, 3)
        inverse = np.array(
            [float(row[f"inv_{k}"]) for k in ("m00", "m01", "m02", "m10", "m11", "m12")]
        ).reshape(2, 3)
        corners = np.array([[0.0, 0.0], [96.0, 0.0], [0.0, 96.0]])
        assert np.allclose(apply(forward, apply(inverse, corners)), corners, atol=1e-3)
