"""Nothing lost (issue 18, items 1, 2, 15): `data synth` replaces only its own output, and every verb
writing one file per input image (overlay, align, infer --draw) goes through the one output-path
rule in facekp_cli/outputs.py: never over an input, never outside the folder, never a name twice."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.data.synth.generator import synthesize
from facekp_cli.errors import DataError, ExitCode, UsageError
from facekp_cli.outputs import OutputFolder, safe_relative
from facekp_cli.predict.sources import ImageSource, find_images


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def face(path: Path, shade: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 40, 3), shade, np.uint8)).save(path)
    return path


# --- item 1: data synth --out ------------------------------------------------------------------


def _real_dataset(root: Path, tiny_dataset: Path) -> Path:
    shutil.copytree(tiny_dataset / "train", root / "train")
    (root / "README").write_text("my own labelled faces\n")
    (root / "synth.json").unlink(missing_ok=True)
    return root


@pytest.mark.parametrize("kind", ["real train/ and a README", "a kaggle import", "synth folder plus a note"])
def test_synth_never_replaces_a_folder_it_did_not_write(tmp_path, tiny_dataset, kind):
    precious = tmp_path / "precious"
    if kind == "real train/ and a README":
        _real_dataset(precious, tiny_dataset)
    elif kind == "a kaggle import":  # what `data import kaggle` leaves: train/ and test/, no synth.json
        shutil.copytree(tiny_dataset, precious)
        (precious / "synth.json").unlink()
    else:  # facekp's own output, to which the user added a file: that file must not vanish
        synthesize(precious, 4, workers=1)
        (precious / "train" / "notes.txt").write_text("checked by hand")
    before = tree(precious)
    result = invoke("data", "synth", "--n", "5", "--out", precious)
    assert result.exit_code == ExitCode.DATA, result.output
    assert "refusing to overwrite" in result.stderr and str(precious) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert tree(precious) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_synth_replaces_its_own_output_and_resume_still_works(tmp_path):
    root = tmp_path / "faces_data"
    synthesize(root, 6, seed=1, workers=1)
    result = invoke("data", "synth", "--n", "4", "--seed", "2", "--out", root)
    assert result.exit_code == 0, result.output
    assert json.loads((root / "synth.json").read_text())["n"] == 4
    result = invoke("data", "synth", "--n", "4", "--seed", "2", "--out", root, "--resume")
    assert result.exit_code == 0, result.output
    (tmp_path / "empty").mkdir()
    assert invoke("data", "synth", "--n", "2", "--out", tmp_path / "empty").exit_code == 0


def test_synth_refuses_a_file_in_place_of_the_folder(tmp_path):
    target = tmp_path / "faces_data"
    target.write_text("not a folder")
    with pytest.raises(DataError, match="not a folder"):
        synthesize(target, 2)
    assert target.read_text() == "not a folder"


# --- item 2: the shared output-path rule -------------------------------------------------------


@pytest.fixture()
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    face(folder / "x.jpg", 60)
    face(folder / "x.png", 200)
    return folder


@pytest.mark.parametrize("verb", ["overlay", "align", "infer"])
def test_no_verb_writes_over_its_inputs(photos, tiny_checkpoint, verb):
    before = tree(photos)
    if verb == "infer":
        args = ["infer", photos, "--ckpt", tiny_checkpoint, "-o", photos.parent / "p.json", "--draw", photos]
    else:
        args = [verb, photos, "--ckpt", tiny_checkpoint, "-o", photos]
    result = invoke(*args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "is the folder of the input" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert tree(photos) == before
    # a file given on its own, into its own folder: x.jpg's output would be x.jpg itself
    args[1] = photos / "x.jpg"
    result = invoke(*args)
    assert result.exit_code == ExitCode.USAGE and tree(photos) == before


def test_overlay_collisions_get_distinct_predictable_names(tmp_path, photos, tiny_checkpoint):
    other = tmp_path / "d2"
    face(other / "x.jpg", 120)
    out = tmp_path / "out"
    result = invoke("overlay", photos, other, "--ckpt", tiny_checkpoint, "-o", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["x.jpg", "x_2.jpg", "x_png.jpg"]
    # each output shows its own input (flat grey in, flat grey out where no asset is drawn)
    shades = {p.name: int(np.asarray(Image.open(p))[0, 0, 0]) for p in out.iterdir()}
    assert abs(shades["x.jpg"] - 60) < 8 and abs(shades["x_png.jpg"] - 200) < 8
    assert abs(shades["x_2.jpg"] - 120) < 8


def test_align_rows_name_each_crop_exactly(tmp_path, photos, tiny_checkpoint):
    out = tmp_path / "crops"
    result = invoke("align", photos, "--no-detect", "--ckpt", tiny_checkpoint, "-o", out)
    assert result.exit_code == 0, result.output
    with open(out / "transforms.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["crop"] for r in rows) == ["x.jpg", "x_png.jpg"]
    assert {r["crop"]: Path(r["source"]).name for r in rows} == {"x.jpg": "x.jpg", "x_png.jpg": "x.png"}
    assert all((out / r["crop"]).is_file() for r in rows)


def test_infer_draw_makes_one_drawing_per_prediction(tmp_path, photos, tiny_checkpoint):
    face(photos / "a.png", 90)
    draw = tmp_path / "drawn"
    result = invoke(
        "infer", photos, "--no-detect", "--ckpt", tiny_checkpoint, "-o", tmp_path / "p.json", "--draw", draw
    )
    assert result.exit_code == 0, result.output
    predictions = json.loads((tmp_path / "p.json").read_text())
    assert len(predictions["images"]) == 3
    assert sorted(p.name for p in draw.iterdir()) == ["a.jpg", "x.jpg", "x_png.jpg"]


def test_overlay_glob_with_parent_parts_stays_in_the_output_folder(tmp_path, tiny_checkpoint, monkeypatch):
    face(tmp_path / "g" / "src" / "a.jpg", 80)
    (tmp_path / "w" / "ab").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "w")
    out = tmp_path / "w" / "out"
    result = invoke("overlay", "a[b]/../../g/src/*.jpg", "--ckpt", tiny_checkpoint, "-o", "out")
    assert result.exit_code == 0, result.output
    written = [p for p in tmp_path.rglob("*.jpg") if p != tmp_path / "g" / "src" / "a.jpg"]
    assert written and all(out in p.parents for p in written), written


def test_a_symlinked_subfolder_leading_out_is_refused(tmp_path):
    face(tmp_path / "in" / "sub" / "a.jpg", 80)
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "sub").symlink_to(tmp_path / "elsewhere")
    sources = find_images([tmp_path / "in"], recursive=True)
    with pytest.raises(UsageError, match="outside it"):
        OutputFolder(tmp_path / "out", sources, ".jpg")


names = st.lists(
    st.lists(
        st.sampled_from(["a", "A", "b", "..", ".", ".h", "x.y", "sub", "[c]"]), min_size=1, max_size=4
    ).map(lambda parts: "/".join(parts)),
    min_size=1,
    max_size=12,
).map(lambda stems: [f"{s}.{ext}" for s, ext in zip(stems, ["jpg", "png", "JPG", "jpeg"] * 3, strict=False)])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(relative=names)
def test_any_names_map_to_distinct_files_inside_the_folder_and_never_an_input(tmp_path, relative):
    """Hostile-input property for every per-file verb: whatever relative names the inputs have
    (parent parts, hidden parts, case twins, brackets), each gets its own file inside the folder."""
    out = tmp_path / "out"
    sources = [ImageSource(tmp_path / "in" / f"{i}" / n, n) for i, n in enumerate(relative)]
    folder = OutputFolder(out, sources, ".jpg")
    got = [folder.name(s) for s in sources]
    assert len({g.casefold() for g in got}) == len(got)
    for name in got:
        assert ".." not in PurePosixPath(name).parts and not PurePosixPath(name).is_absolute()
        assert out.resolve() in (out / name).resolve().parents
    assert got == [OutputFolder(out, sources, ".jpg").name(s) for s in sources]  # predictable
    tagged = folder.name(sources[0], "_face0")
    assert tagged.casefold() not in {g.casefold() for g in got}


def test_safe_relative_drops_what_leads_out():
    assert safe_relative("a[b]/../../g/src/x.jpg") == PurePosixPath("a[b]/g/src/x.jpg")
    assert safe_relative("/etc/x.jpg") == PurePosixPath("etc/x.jpg")
    assert safe_relative("../.x.jpg") == PurePosixPath("x.jpg")


def test_a_single_output_file_is_never_one_of_its_inputs(tmp_path, tiny_dataset, tiny_checkpoint):
    """`overlay v.avi -o v.avi`, `infer v.avi --draw v.avi`, `infer a.jpg -o a.jpg --format json`:
    the atomic rename at the end would have replaced the input."""
    from tests.predict.video_clips import synthetic_faces, write_clip

    clip = tmp_path / "face.avi"
    write_clip(clip, "moving", synthetic_faces(tiny_dataset, 1), frames=4, size=(96, 96), face_height=80.0)
    photo = face(tmp_path / "a.jpg", 70)
    before = tree(tmp_path)
    for args in (
        ["overlay", clip, "--no-detect", "-o", clip],
        ["infer", clip, "--no-detect", "-o", tmp_path / "v.jsonl", "--draw", clip],
        ["infer", clip, "--no-detect", "-o", clip, "--format", "jsonl"],
        ["infer", photo, "-o", photo, "--format", "json"],
    ):
        result = invoke(*args, "--ckpt", tiny_checkpoint)
        assert result.exit_code == ExitCode.USAGE, (args, result.output)
        assert "it would be replaced" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert tree(tmp_path) == before
