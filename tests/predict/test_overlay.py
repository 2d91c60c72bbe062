"""`facekp overlay`: the asset's placement geometry, checked numerically and on rendered pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facekp_cli.apps.overlay import asset_names, load_asset, overlay_faces, placement
from facekp_cli.cli.main import app
from facekp_cli.errors import DataError, ExitCode, UsageError
from facekp_cli.keypoints import NAMES
from tests.predict.video_clips import synthetic_faces, write_clip

LEFT_PUPIL, RIGHT_PUPIL = NAMES.index("left_pupil"), NAMES.index("right_pupil")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def face_points(left, right) -> np.ndarray:
    points = np.full((14, 2), np.nan)
    points[LEFT_PUPIL], points[RIGHT_PUPIL] = left, right
    return points


def apply(matrix, points):
    return np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]


@pytest.fixture
def marker_asset(tmp_path) -> Path:
    """A 60x20 transparent asset with opaque red dots (3x3 px) centred on its two anchors."""
    from PIL import Image

    picture = np.zeros((20, 60, 4), np.uint8)
    for x, y in ((10, 10), (50, 10)):
        picture[y - 1 : y + 2, x - 1 : x + 2] = (255, 0, 0, 255)
    Image.fromarray(picture).save(tmp_path / "dots.png")
    # anchors at the centres of the dots' middle pixels: pixel (10, 10) covers 10..11, centre 10.5
    (tmp_path / "assets.toml").write_text(
        '[dots]\nfile = "dots.png"\nanchors = [[10.5, 10.5], [50.5, 10.5]]\n'
        'points = ["left_pupil", "right_pupil"]\n'
    )
    return tmp_path / "assets.toml"


def test_the_anchors_land_exactly_on_the_face_points_turned_and_scaled(marker_asset):
    asset = load_asset("dots", marker_asset)
    for left, right in (((100, 100), (180, 100)), ((50, 80), (90, 150)), ((200, 40), (120, 60))):
        matrix = placement(asset, face_points(left, right))
        assert np.allclose(apply(matrix, asset.anchors), [left, right], atol=1e-9)


@pytest.mark.parametrize("roll_deg", [0.0, 30.0, -75.0])
def test_offset_and_scale_follow_the_head(marker_asset, roll_deg):
    from dataclasses import replace

    asset = replace(load_asset("dots", marker_asset), scale=1.5, offset=(0.1, -0.4))
    a = np.radians(roll_deg)
    along = np.array([np.cos(a), np.sin(a)])
    across = np.array([-np.sin(a), np.cos(a)])  # down the face when level
    left = np.array([100.0, 120.0])
    right = left + 80 * along
    matrix = placement(asset, face_points(left, right))
    middle = apply(matrix, asset.anchors.mean(axis=0, keepdims=True))[0]
    assert np.allclose(middle, (left + right) / 2 + 80 * (0.1 * along - 0.4 * across), atol=1e-9)
    ends = apply(matrix, asset.anchors)
    assert np.linalg.norm(ends[1] - ends[0]) == pytest.approx(1.5 * 80)
    direction = (ends[1] - ends[0]) / np.linalg.norm(ends[1] - ends[0])
    assert np.allclose(direction, along, atol=1e-9)


def test_rendered_markers_sit_on_the_points(marker_asset):
    asset = load_asset("dots", marker_asset)
    image = np.zeros((200, 260, 3), np.uint8)
    left, right = np.array([70.25, 90.5]), np.array([170.75, 130.0])
    drawn = overlay_faces(image, asset, [face_points(left, right)])
    red = drawn[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0 : red.shape[0], 0 : red.shape[1]]
    for target in (left, right):
        near = (np.abs(xs + 0.5 - target[0]) < 8) & (np.abs(ys + 0.5 - target[1]) < 8)
        weight = red * near
        centroid = np.array([(weight * (xs + 0.5)).sum(), (weight * (ys + 0.5)).sum()]) / weight.sum()
        assert np.linalg.norm(centroid - target) < 0.35  # sub-pixel, through warping and blending
    assert drawn[..., 1].max() == 0 and drawn[5, 5].tolist() == [0, 0, 0]  # transparent elsewhere


def test_a_face_without_its_anchor_points_is_left_alone(marker_asset):
    asset = load_asset("dots", marker_asset)
    image = np.full((50, 50, 3), 7, np.uint8)
    assert np.array_equal(overlay_faces(image, asset, [np.full((14, 2), np.nan)]), image)


def test_shipped_assets_load():
    assert asset_names() == ["glasses", "mask", "moustache"]
    for name in asset_names():
        asset = load_asset(name)
        assert asset.image.shape[2] == 4 and asset.image[..., 3].min() == 0  # transparent somewhere


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[x]\nfile = "dots.png"\nanchors = [[0, 0]]\npoints = ["left_pupil", "right_pupil"]\n', "'anchors'"),
        (
            '[x]\nfile = "dots.png"\nanchors = [[0, 0], [1, 0]]\npoints = ["left_eye", "right_pupil"]\n',
            "'points'",
        ),
        (
            '[x]\nfile = "none.png"\nanchors = [[0, 0], [1, 0]]\npoints = ["left_pupil", "right_pupil"]\n',
            "not found",
        ),
        (
            '[x]\nfile = "dots.png"\nanchors = [[0, 0], [1, 0]]\npoints = ["left_pupil", "right_pupil"]\n'
            "scle = 2",
            "scle",
        ),
        ("[x\n", "not a readable assets file"),
    ],
    ids=["one anchor", "unknown point", "missing picture", "misspelt key", "bad toml"],
)
def test_bad_asset_files_name_the_file_and_problem(marker_asset, text, message):
    bad = marker_asset.parent / "bad.toml"
    bad.write_text(text)
    with pytest.raises(DataError) as info:
        load_asset("x", bad)
    assert str(bad) in str(info.value) and message in str(info.value)
    with pytest.raises(UsageError, match="no asset named 'hat'"):
        load_asset("hat", marker_asset)


def test_overlay_verb_on_images_and_on_a_video(tiny_dataset, facekp_checkpoint, tmp_path):
    images = tiny_dataset / "test" / "images"
    out = tmp_path / "dressed"
    # --no-detect: these are face crops (auto would also search them; YuNet misses 2 of the 12)
    result = invoke(
        "overlay", images, "--no-detect", "--asset", "glasses", "--ckpt", facekp_checkpoint, "-o", out
    )
    assert result.exit_code == 0, result.output
    count = len(list(images.iterdir()))
    assert (
        len(list(out.glob("*.jpg"))) == count
        and f"glasses on {count} faces in {count} images" in result.stdout
    )
    clip_path = tmp_path / "face.avi"
    write_clip(
        clip_path, "moving", synthetic_faces(tiny_dataset, 1), frames=8, size=(128, 128), face_height=110.0
    )
    video_out = tmp_path / "dressed.mp4"
    result = invoke(
        "overlay", clip_path, "--no-detect", "-a", "moustache", "--ckpt", facekp_checkpoint, "-o", video_out
    )
    assert result.exit_code == 0, result.output
    from facekp_cli.video.io import VideoFrames

    with VideoFrames(video_out) as video:
        assert sum(1 for _ in video) == 8
    wrong = invoke("overlay", clip_path, "--ckpt", facekp_checkpoint, "-o", tmp_path / "frames")
    assert wrong.exit_code == ExitCode.USAGE and "needs a video output file" in wrong.stderr
    # images to a video file name: refused for every suffix facekp reads as video (one rule)
    for suffix in (".mp4", ".webm", ".mpg"):
        wrong = invoke("overlay", images, "--ckpt", facekp_checkpoint, "-o", tmp_path / f"pictures{suffix}")
        assert wrong.exit_code == ExitCode.USAGE and "not a video file" in wrong.stderr, suffix
        assert not (tmp_path / f"pictures{suffix}").exists()


def test_asset_names_complete_on_tab():
    from tests.test_completion import complete

    assert complete("facekp overlay --asset ") == ["glasses", "mask", "moustache"]
    assert complete("facekp overlay --asset m") == ["mask", "moustache"]
