"""What `infer --out` means (issue 18, items 10 and 11): the name's suffix is the format, `-` is
standard output, and `--resume` continues only what the same model wrote."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.errors import ExitCode


def invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def images(tiny_dataset: Path) -> Path:
    return tiny_dataset / "test" / "images"


@pytest.fixture(scope="module")
def other_checkpoint(facekp_checkpoint: Path, tmp_path_factory) -> Path:
    """Another model file (other bytes, so another sha256) with the same network."""
    checkpoint = torch.load(facekp_checkpoint, map_location="cpu", weights_only=True)
    first = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][first] = checkpoint["state_dict"][first] * 1.01
    out = tmp_path_factory.mktemp("other") / "other.ckpt"
    torch.save(checkpoint, out)
    return out


@pytest.mark.parametrize(
    ("name", "extra", "message"),
    [
        ("preds.json", ["--format", "csv"], "--format csv but the name says json"),
        ("preds.csv", ["-f", "jsonl"], "--format jsonl but the name says csv"),
        ("preds.txt", [], "'.txt' is not a predictions format; name it .json or .jsonl or .csv"),
        ("v.webm", [], "the annotated video is --draw FILE"),
    ],
)
def test_an_out_name_that_would_lie_about_its_format_is_refused(
    images, facekp_checkpoint, tmp_path, name, extra, message
):
    out = tmp_path / name
    result = invoke("infer", images, "--ckpt", facekp_checkpoint, "-o", out, *extra)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_the_suffix_decides_even_against_infer_format_in_the_settings(images, facekp_checkpoint, tmp_path):
    out = tmp_path / "preds.json"
    result = invoke("--set", "infer.format=csv", "infer", images, "--ckpt", facekp_checkpoint, "-o", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["schema"] == "facekp.predictions"  # was CSV named .json
    bare = tmp_path / "preds"  # no suffix: the setting says which format
    result = invoke("--set", "infer.format=csv", "infer", images, "--ckpt", facekp_checkpoint, "-o", bare)
    assert result.exit_code == 0 and bare.read_text().startswith("filename,")


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_dash_is_standard_output_for_images_as_for_video(
    images, facekp_checkpoint, tmp_path, monkeypatch, fmt
):
    monkeypatch.chdir(tmp_path)
    result = invoke("infer", images, "--ckpt", facekp_checkpoint, "-o", "-", "-f", fmt)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "-").exists()  # was: a file named '-'
    count = len(list(images.iterdir()))
    if fmt == "json":
        assert len(json.loads(result.stdout)["images"]) == count
    elif fmt == "jsonl":
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert "schema" in lines[0] and "summary" in lines[-1] and len(lines) == count + 2
    else:
        assert len(list(csv.reader(result.stdout.splitlines()))) == count + 1
    assert "wrote standard output" in result.stderr
    refused = invoke("infer", images, "--ckpt", facekp_checkpoint, "-o", "-", "-f", "jsonl", "--resume")
    assert refused.exit_code == ExitCode.USAGE and "standard output" in refused.stderr


def test_csv_resume_with_another_model_is_refused_like_jsonl(
    images, facekp_checkpoint, other_checkpoint, tmp_path
):
    out = tmp_path / "preds.csv"
    first = invoke("infer", images, "--ckpt", facekp_checkpoint, "-o", out, "--resume")
    assert first.exit_code == 0, first.output
    before = out.read_bytes()
    assert json.loads((tmp_path / "preds.csv.model.json").read_text())["model"]["path"]
    other = invoke("infer", images, "--ckpt", other_checkpoint, "-o", out, "--resume")
    assert other.exit_code == ExitCode.USAGE, other.output
    assert "was written by another model" in other.stderr
    assert out.read_bytes() == before  # no rows of the second model appended
    same = invoke("infer", images, "--ckpt", facekp_checkpoint, "-o", out, "--resume")
    assert same.exit_code == 0 and out.read_bytes() == before and "already in the file" in same.stdout
    # A CSV written whole (no --resume) can be resumed by its model too, and only by it.
    whole = tmp_path / "whole.csv"
    assert invoke("infer", images, "--ckpt", facekp_checkpoint, "-o", whole).exit_code == 0
    assert invoke("infer", images, "--ckpt", other_checkpoint, "-o", whole, "--resume").exit_code == 2


def test_csv_resume_without_the_model_record_is_refused(images, facekp_checkpoint, tmp_path):
    out = tmp_path / "preds.csv"
    assert invoke("infer", images, "--ckpt", facekp_checkpoint, "-o", out).exit_code == 0
    (tmp_path / "preds.csv.model.json").unlink()
    result = invoke("infer", images, "--ckpt", facekp_checkpoint, "-o", out, "--resume")
    assert result.exit_code == ExitCode.USAGE and "cannot tell which model wrote its rows" in result.stderr


def test_jsonl_resume_by_an_absolute_or_relative_path_does_each_image_once(
    tiny_dataset, facekp_checkpoint, tmp_path, monkeypatch
):
    monkeypatch.chdir(tiny_dataset / "test")
    out = tmp_path / "preds.jsonl"
    assert invoke("infer", "images", "--ckpt", facekp_checkpoint, "-o", out).exit_code == 0
    again = invoke(
        "infer", tiny_dataset / "test" / "images", "--ckpt", facekp_checkpoint, "-o", out, "--resume"
    )
    assert again.exit_code == 0, again.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    paths = [r["path"] for r in records if "path" in r]
    count = len(list((tiny_dataset / "test" / "images").iterdir()))
    assert len(paths) == count  # was 2 x count: every image redone under its absolute name
    assert f"+{count} already in the file" in again.stdout
