"""Nothing silently wrong (issue 18, items 3, 5, 6, 7, 8, 15): non-finite numbers, damaged tracking
journals, damaged resume files, bad tune storage and spaces, over-long names, Latin-1 CSVs and
paths that lead out. Each is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.errors import ExitCode, SettingsError
from facekp_cli.settings import _SECTIONS, load_settings

NON_FINITE = ["inf", "-inf", "nan", "1e999"]


def invoke(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def one_line_error(result, code: int, *needles: str) -> None:
    assert result.exit_code == code, result.output
    err = result.stderr.strip()
    assert "Traceback" not in result.output and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


# --- item 3: every float setting is finite -----------------------------------------------------

FLOAT_KEYS = [
    f"{section}.{key}"
    for section, model in _SECTIONS.items()
    for key, field in model.model_fields.items()
    if float in getattr(field.annotation, "__args__", (field.annotation,))
]


def test_the_float_keys_are_found():
    assert {"train.lr", "train.grad_clip", "train.weight_decay", "augment.keep_margin"} <= set(FLOAT_KEYS)
    assert {"video.beta", "tracking.timeout_s", "tune.timeout_s"} <= set(FLOAT_KEYS)


@settings(max_examples=60, deadline=None)
@given(
    key=st.sampled_from(FLOAT_KEYS), value=st.sampled_from(NON_FINITE), layer=st.sampled_from(["flag", "env"])
)
def test_no_float_setting_takes_a_non_finite_value(key, value, layer):
    """Hostile-input property of the settings layer, which every verb reads through."""
    section, name = key.split(".")
    if layer == "flag":
        args = {"overrides": {key: value}, "environ": {}}
    else:
        args = {"environ": {f"FACEKP_{section.upper()}__{name.upper()}": value}}
    with pytest.raises(SettingsError, match=rf"'{key}'.*finite"):
        load_settings(**args)


@pytest.mark.parametrize("text", ["inf", "-inf", "nan"])
def test_a_non_finite_value_in_conf_toml_names_file_and_key(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf.toml").write_text(f"[train]\nlr = {text}\n")
    result = invoke("config", "show", "--json")
    one_line_error(result, ExitCode.USAGE, "conf.toml", "train.lr", "finite")
    assert "Infinity" not in result.stdout and "NaN" not in result.stdout


def test_set_lr_inf_is_refused_before_training(tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("--set", "train.lr=inf", "train", "--data", tiny_dataset, "--no-tracking")
    one_line_error(result, ExitCode.USAGE, "train.lr", "command-line flag")
    assert not (tmp_path / "runs").exists()


def test_a_diverging_training_stops_and_keeps_the_good_best_ckpt(tmp_path, tiny_dataset, monkeypatch):
    """A finite but absurd learning rate sends the loss to inf/NaN: the run stops with the reason
    and the good best.ckpt beside it is left as it was (it used to be replaced: "Copied to")."""
    monkeypatch.chdir(tmp_path)
    best = tmp_path / "best.ckpt"
    best.write_bytes(b"a good model")
    sets = {
        "model.input_size": 32, "model.width": 8, "train.batch_size": 8, "train.epochs": 3,
        "data.num_workers": 0, "train.accelerator": "cpu", "train.grad_clip": 0, "train.lr": 1e30,
        "train.ema_decay": 0,
    }  # fmt: skip
    flags = [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]
    result = invoke(*flags, "train", "--data", tiny_dataset, "--no-tracking")
    one_line_error(result, ExitCode.FAILURE, "training diverged", "train.lr=1e+30")
    assert best.read_bytes() == b"a good model"
    assert "Copied to" not in result.stdout


def test_infer_never_writes_a_bare_nan(tmp_path, face_png):
    """A checkpoint whose weights hold NaN (a diverged run kept by hand): each image is a failed
    entry with the reason, the file stays valid JSON (json.loads refuses NaN with this hook)."""
    import torch
    from untrained_checkpoint import write_untrained_checkpoint

    ckpt = write_untrained_checkpoint(tmp_path / "nan.ckpt", input_size=32, width=8)
    state = torch.load(ckpt, weights_only=False)
    for value in state["state_dict"].values():
        if value.is_floating_point():
            value.fill_(float("nan"))
    torch.save(state, ckpt)
    for out in (tmp_path / "p.json", tmp_path / "p.jsonl"):
        result = invoke("infer", face_png, "--no-detect", "--ckpt", ckpt, "-o", out)
        assert result.exit_code == ExitCode.PARTIAL, result.output
        text = out.read_text()

        def no_constants(name, out=out):
            raise AssertionError(f"{out} holds {name}")

        records = (
            [json.loads(text, parse_constant=no_constants)]
            if out.suffix == ".json"
            else [json.loads(line, parse_constant=no_constants) for line in text.splitlines()]
        )
        assert "non-finite" in json.dumps(records)


@pytest.mark.parametrize(
    "field, value",
    [
        ("scale", "inf"),
        ("scale", "nan"),
        ("offset", "[0.0, nan]"),
        ("offset", "[inf, 0.0]"),
        ("anchors", "[[0.0, 0.0], [nan, 1.0]]"),
    ],
)
def test_overlay_asset_numbers_must_be_finite(tmp_path, field, value):
    from PIL import Image

    from facekp_cli.apps.overlay import load_asset
    from facekp_cli.errors import DataError

    Image.new("RGBA", (20, 10)).save(tmp_path / "a.png")
    entry = {
        "file": '"a.png"',
        "anchors": "[[5.0, 5.0], [15.0, 5.0]]",
        "points": '["left_pupil", "right_pupil"]',
    }
    entry[field] = value
    (tmp_path / "assets.toml").write_text("[x]\n" + "".join(f"{k} = {v}\n" for k, v in entry.items()))
    with pytest.raises(DataError, match="finite"):
        load_asset("x", tmp_path / "assets.toml")


# --- item 15: overlay asset files, run and study names, iBUG symlinks --------------------------


@pytest.mark.parametrize("file", ["../secret.png", "/etc/secret.png", "link/s.png", "sub/../../secret.png"])
def test_an_asset_picture_must_lie_beside_its_assets_file(tmp_path, file):
    from PIL import Image

    from facekp_cli.apps.overlay import load_asset
    from facekp_cli.errors import DataError

    (tmp_path / "assets").mkdir()
    Image.new("RGBA", (20, 10), (255, 0, 0, 255)).save(tmp_path / "secret.png")
    (tmp_path / "assets" / "link").symlink_to(tmp_path)
    text = (
        f'[x]\nfile = "{file}"\nanchors = [[5.0, 5.0], [15.0, 5.0]]\npoints = ["left_pupil", "right_pupil"]\n'
    )
    (tmp_path / "assets" / "assets.toml").write_text(text)
    with pytest.raises(DataError, match=r"(outside|inside) the assets file's folder"):
        load_asset("x", tmp_path / "assets" / "assets.toml")


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "..", "x\\..\\y", ""])
@pytest.mark.parametrize("key, flag", [("train.run_name", "--run-name"), ("tune.study", "--study")])
def test_run_and_study_names_cannot_leave_the_runs_folder(tmp_path, monkeypatch, key, flag, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match=rf"'{key}'.*plain folder name"):
        load_settings(overrides={key: name}, environ={})
    verb = "train" if key == "train.run_name" else "tune"
    result = invoke(verb, flag, name, "--data", tmp_path, "--no-tracking")
    assert result.exit_code == ExitCode.USAGE and "plain folder name" in result.stderr, result.output
    assert list(tmp_path.iterdir()) == []


def test_ibug_import_does_not_follow_a_symlink_out_of_the_source(tmp_path):
    import cv2

    src, outside = tmp_path / "src", tmp_path / "outside"
    src.mkdir(), outside.mkdir()
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
    cv2.imwrite(str(outside / "private.png"), photo)
    cv2.imwrite(str(src / "ok.png"), photo)
    for stem in ("ok", "leak"):
        points = np.column_stack([rng.uniform(60, 140, 68), rng.uniform(60, 140, 68)])
        body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in points)
        (src / f"{stem}.pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")
    (src / "leak.png").symlink_to(outside / "private.png")
    out = tmp_path / "imported"
    result = invoke("data", "import", "ibug", src, "--out", out, "--test-fraction", "0")
    assert result.exit_code == 0, result.output  # the importers list skipped inputs and go on
    assert "leak.png: filename 'leak.png' resolves outside the source folder" in result.output
    assert len(list((out / "train" / "images").iterdir())) == 1


@pytest.mark.parametrize("margin", ["nan", "inf", "-0.5"])
def test_ibug_margin_must_be_finite(tmp_path, margin):
    result = invoke("data", "import", "ibug", tmp_path, "--out", tmp_path / "out", "--margin", margin)
    one_line_error(result, ExitCode.USAGE, "--margin must be a finite number")


# --- item 8: over-long output names, a Latin-1 Kaggle CSV --------------------------------------


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_an_output_name_over_255_bytes_is_one_line(tmp_path, face_png, tiny_checkpoint, suffix):
    out = tmp_path / ("é" * 130 + suffix)  # 260 bytes in UTF-8
    result = invoke("infer", face_png, "--ckpt", tiny_checkpoint, "-o", out)
    one_line_error(result, ExitCode.USAGE, "file name too long", "255")


def test_video_outputs_with_over_long_names_are_one_line(tmp_path, tiny_dataset, tiny_checkpoint):
    from tests.predict.video_clips import synthetic_faces, write_clip

    clip = tmp_path / "face.avi"
    write_clip(clip, "moving", synthetic_faces(tiny_dataset, 1), frames=4, size=(96, 96), face_height=80.0)
    long = "v" * 256
    result = invoke("infer", clip, "--ckpt", tiny_checkpoint, "-o", tmp_path / f"{long}.jsonl")
    one_line_error(result, ExitCode.USAGE, "file name too long")
    result = invoke("overlay", clip, "--ckpt", tiny_checkpoint, "-o", tmp_path / f"{long}.mp4")
    one_line_error(result, ExitCode.USAGE, "file name too long")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.avi"]


def test_a_kaggle_csv_with_a_latin1_byte_names_file_and_line(tmp_path):
    path = tmp_path / "training.csv"
    pixels = " ".join(["7"] * 96 * 96)
    path.write_bytes(
        b"left_eye_center_x,left_eye_center_y,Image\n"
        + f"30,40,{pixels}\n".encode()
        + "caf\xe9,40,".encode("latin-1")
        + pixels.encode()
        + b"\n"
    )
    result = invoke("data", "import", "kaggle", path, "--out", tmp_path / "out")
    one_line_error(result, ExitCode.DATA, f"{path}:3:", "not UTF-8")
    assert not (tmp_path / "out").exists()


# --- item 6: infer --resume on damaged JSON Lines ----------------------------------------------


@pytest.mark.parametrize(
    "damage, message",
    [
        ("5", "a JSON number"),
        ("null", "a JSON null"),
        ('["a"]', "a JSON array"),
        ("header model null", "names no model"),
        ("header model string", "names no model"),
    ],
)
def test_infer_resume_on_a_damaged_jsonl_is_one_line(tmp_path, face_png, tiny_checkpoint, damage, message):
    out = tmp_path / "p.jsonl"
    assert invoke("infer", face_png, "--ckpt", tiny_checkpoint, "-o", out).exit_code == 0
    lines = out.read_text().splitlines()
    if damage.startswith("header"):
        header = json.loads(lines[0])
        header["model"] = None if damage.endswith("null") else "best.ckpt"
        lines[0] = json.dumps(header)
    else:
        lines.insert(1, damage)
    out.write_text("\n".join(lines) + "\n")
    before = out.read_bytes()
    result = invoke("infer", face_png, "--ckpt", tiny_checkpoint, "-o", out, "--resume")
    one_line_error(result, ExitCode.DATA, str(out), message)
    assert out.read_bytes() == before


# --- item 7: tune storage URLs and spaces, found before any trial ------------------------------


@pytest.fixture()
def tune_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not_a_db.db").write_text("hello, I am text")
    (tmp_path / "folder.db").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    "url, message",
    [
        ("sqlite:///missing/folder/tune.db", "does not exist"),
        ("sqlite:///not_a_db.db", "not a SQLite database"),
        ("sqlite:///folder.db", "is a folder"),
        ("nosuchdb://x/y", "unknown database scheme"),
        ("just words", "not a database URL"),
        ("mssql+pymssql://u@localhost/db", "driver is not installed"),
    ],
)
def test_bad_tune_storage_is_one_line_before_any_trial(tune_cwd, tiny_dataset, url, message):
    before = sorted(p.name for p in tune_cwd.iterdir())
    result = invoke("tune", "--data", tiny_dataset, "--storage", url, "--no-tracking", "--n-trials", "1")
    one_line_error(result, ExitCode.USAGE, "--storage", message)
    assert sorted(p.name for p in tune_cwd.iterdir()) == before  # no runs/ folder, no trial


@pytest.mark.parametrize(
    "space, message",
    [
        ("[train.lr]\nlow = 0.001\nhigh = nan\n", "finite"),
        ("[train.lr]\nlow = 0.001\nhigh = inf\n", "finite"),
        ("[train.lr]\nlow = -inf\nhigh = 0.1\n", "finite"),
        ('[model.head]\nchoices = ["regression", "nope"]\n', "'model.head'"),
        ("[train.batch_size]\nchoices = [0, 32]\n", "'train.batch_size'"),
        ("[train.lr]\nchoices = [0.01, nan]\n", "finite"),
        ("[train.epochs]\nchoices = [[1, 2]]\n", "not a finite number, string or boolean"),
        ("[augment.hflip_p]\nlow = 0.5\nhigh = 3.0\n", "'augment.hflip_p'"),
    ],
)
def test_bad_tune_spaces_are_found_before_the_first_trial(tune_cwd, tiny_dataset, space, message):
    (tune_cwd / "space.toml").write_text(space)
    result = invoke(
        "tune", "--data", tiny_dataset, "--space", "space.toml", "--no-tracking", "--n-trials", "1"
    )
    one_line_error(result, ExitCode.USAGE, message)
    assert not (tune_cwd / "runs").exists()


# --- item 5: the MLflow offline journal --------------------------------------------------------


@pytest.fixture()
def store(tmp_path):
    """A real MLflow store (SQLite) with one run, and an empty pending folder."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("facekp", artifact_location=(tmp_path / "mlartifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    return uri, client, run_id, tmp_path / "pending"


def _journal(pending: Path, key: str, uri: str, run_id: str, artifact: Path | None = None):
    from facekp_cli.experiments.journal import PendingJournal

    journal = PendingJournal(pending, key, uri)
    journal.add({"op": "params", "run_id": run_id, "params": [[f"{key}.p", "1"]]})
    journal.add({"op": "metrics", "run_id": run_id, "metrics": [[f"{key}_m", 0.5, 1000, 1]]})
    if artifact is not None:
        journal.add(
            {"op": "artifact", "run_id": run_id, "path": journal.keep_file(artifact), "artifact_path": None}
        )
    return journal


DAMAGE = {
    "torn last line": (b'{"op": "metrics", "run_id": "', "torn last line"),
    "missing uri": (b'{"op": "terminate", "run_id": "R", "status": "FINISHED"}\n', "no server URI"),
    "wrong type": (b'{"uri": "U", "op": "params", "run_id": "R", "params": 5}\n', "'params'"),
    "metric entry": (
        b'{"uri": "U", "op": "metrics", "run_id": "R", "metrics": [["m", "x", 1, 1]]}\n',
        "'metrics'",
    ),
    "a number": (b"5\n", "not a journalled call"),
    "NUL in a path": (
        b'{"uri": "U", "op": "artifact", "run_id": "R", "path": "a\\u0000b", "artifact_path": null}\n',
        "unusable file path",
    ),
    "unknown call": (b'{"uri": "U", "op": "rm -rf", "run_id": "R"}\n', "unknown journalled call"),
    "latin-1": ('{"uri": "U", "op": "caf\xe9"}\n'.encode("latin-1"), "not UTF-8"),
    "artifact outside": (
        b'{"uri": "U", "op": "artifact", "run_id": "R", "path": "/etc/hostname", "artifact_path": null}\n',
        "outside the journal's folder",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_sync_skips_and_reports_a_damaged_line_and_sends_the_rest(store, tmp_path, damage):
    uri, client, run_id, pending = store
    picture = tmp_path / "curve.png"
    picture.write_bytes(b"\x89PNG fake picture bytes")
    first = _journal(pending, "20260101-000000-a", uri, run_id, artifact=picture)
    raw, message = DAMAGE[damage]
    raw = raw.replace(b'"U"', json.dumps(uri).encode()).replace(b'"R"', json.dumps(run_id).encode())
    with open(first.path, "ab") as fh:
        fh.write(raw)
    _journal(pending, "20260101-000001-b", uri, run_id)  # after the damaged one: must still go
    result = invoke("--set", f"tracking.pending_dir={pending}", "tracking", "sync")
    assert result.exit_code == ExitCode.PARTIAL, result.output
    assert "Traceback" not in result.output
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and message in warnings[0] and f"{first.path}:" in warnings[0], result.stderr
    run = client.get_run(run_id)
    assert run.data.params == {"20260101-000000-a.p": "1", "20260101-000001-b.p": "1"}
    assert set(run.data.metrics) == {"20260101-000000-a_m", "20260101-000001-b_m"}
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert artifacts == {"curve.png"}  # /etc/hostname never
    assert not first.path.exists() and first.path.with_suffix(".skipped").read_bytes().endswith(raw)


def test_sync_reports_a_folder_named_like_a_journal_and_goes_on(store):
    uri, client, run_id, pending = store
    (pending / "20250101-000000-x.jsonl").mkdir(parents=True)
    _journal(pending, "20260101-000001-b", uri, run_id)
    result = invoke("--set", f"tracking.pending_dir={pending}", "tracking", "sync")
    assert result.exit_code == ExitCode.EXTERNAL and "is a folder, not a journal" in result.stderr
    assert "Traceback" not in result.output
    assert client.get_run(run_id).data.params == {"20260101-000001-b.p": "1"}


@settings(max_examples=40, deadline=None)
@given(junk=st.lists(st.binary(max_size=60), min_size=1, max_size=5))
def test_any_bytes_in_a_journal_are_skipped_or_sent_never_a_crash(tmp_path_factory, junk):
    """Hostile-input property of the journal reader: arbitrary lines never raise, and every
    line that survives is a call `_apply` can make with files only from the journal's folder."""
    from facekp_cli.experiments.journal import _OP_FIELDS, read_journal

    folder = tmp_path_factory.mktemp("journal")
    path = folder / "j.jsonl"
    path.write_bytes(b"\n".join(junk))
    contents = read_journal(path)
    for op in contents.ops:
        assert op["op"] in _OP_FIELDS and isinstance(op["uri"], str)
        if "path" in op:
            assert path.with_suffix("").resolve() in Path(op["path"]).resolve().parents
    lines = [line for line in b"\n".join(junk).split(b"\n") if line.strip()]
    assert len(contents.ops) + len(contents.skipped) == len(lines)
