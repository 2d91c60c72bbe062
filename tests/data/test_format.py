"""gt.csv as spreadsheets write it, and the optional row-error collection validate relies on."""

from __future__ import annotations

import numpy as np
import pytest

from facekp_cli.data.format import parse_gt_csv, read_gt_csv, write_gt_csv
from facekp_cli.errors import DataError
from facekp_cli.keypoints import CSV_HEADER


def test_round_trip_keeps_nan_as_empty_cells(tmp_path):
    points = np.arange(2 * 14 * 2, dtype=np.float32).reshape(2, 14, 2) + 0.25
    points[1, 3] = np.nan
    write_gt_csv(tmp_path / "gt.csv", ["a.jpg", "b.png"], points)
    names, back = read_gt_csv(tmp_path / "gt.csv")
    assert names == ["a.jpg", "b.png"]
    np.testing.assert_allclose(back, points, atol=1e-4)
    assert ",,a" not in (tmp_path / "gt.csv").read_text()


def test_spreadsheet_quirks_bom_crlf_spaces():
    row = " a.jpg , " + " , ".join(["1.5"] * 28)
    text = (
        "\ufeff"
        + ",".join(c.upper() if c == "filename" else c for c in CSV_HEADER)
        + "\r\n"
        + row
        + "\r\n\r\n"
    )
    names, points = parse_gt_csv(text, "gt.csv")
    assert names == ["a.jpg"] and float(points[0, 13, 1]) == 1.5


def test_row_errors_are_collected_or_raised():
    header = ",".join(CSV_HEADER)
    good = "a.jpg," + ",".join(["1"] * 28)
    text = "\n".join(
        [header, good, good, "b.jpg,1", "c.jpg," + ",".join(["x"] * 28), "d.jpg," + ",".join(["2"] * 28)]
    )
    errors: list[DataError] = []
    names, _ = parse_gt_csv(text, "gt.csv", errors)
    assert names == ["a.jpg", "d.jpg"]
    assert [str(e).split(":")[1] for e in errors] == ["3", "4", "5"]
    with pytest.raises(DataError, match=r"gt\.csv:3: duplicate filename"):
        parse_gt_csv(text, "gt.csv")
