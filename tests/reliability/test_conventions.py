"""Messages that say what is wrong (issue 18 item 18): a gt.csv given to `data validate`, a 1x1 image
given to `align` or `infer`, and the closing line of a run that skipped files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.errors import ExitCode


def invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_data_validate_of_a_gt_csv_validates_its_split(tiny_dataset, tmp_path):
    result = invoke("data", "validate", tiny_dataset / "train" / "gt.csv", "--json")
    assert result.exit_code == 0, result.output  # was: "dataset folder not found" for a file that exists
    assert '"split": "train"' in result.stdout and '"test"' not in result.stdout
    other = tmp_path / "notes.csv"
    other.write_text("a,b\n")
    refused = invoke("data", "validate", other)
    assert refused.exit_code == ExitCode.DATA
    assert f"{other}: a file, not a dataset; give the dataset folder or a split's gt.csv" in refused.stderr


def test_a_one_pixel_image_is_called_too_small_not_unreadable(tiny_checkpoint, tmp_path):
    from PIL import Image

    tiny = tmp_path / "one.png"
    Image.fromarray(np.full((1, 1, 3), 128, np.uint8)).save(tiny)
    for verb in (["align", tiny, "-o", tmp_path / "aligned"], ["infer", tiny, "-o", tmp_path / "p.json"]):
        result = invoke(*verb, "--ckpt", tiny_checkpoint)
        assert result.exit_code == ExitCode.PARTIAL, result.output
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"facekp: 1 of 1 files skipped: {tiny}: image too small (1x1 px"), last
        assert "could not be read" not in result.stderr
