"""Every way a gt.csv can be wrong gets a DataError naming the file and the line (facekp_cli.data.format).

Files are real files read from disk with read_gt_csv / read_split; each case asserts the file
name, the line number where there is one, and the words a user needs to fix it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from facekp_cli.data.format import read_gt_csv, read_split
from facekp_cli.errors import DataError, ExitCode
from facekp_cli.keypoints import CSV_HEADER

HEADER = ",".join(CSV_HEADER)


def row(name: str = "a.png", value: str = "10", **cells: str) -> str:
    """One gt.csv row; `cells` overrides single columns, e.g. x3='abc'."""
    values = {col: value for col in CSV_HEADER[1:]}
    values.update(cells)
    return ",".join([name, *(values[col] for col in CSV_HEADER[1:])])


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "gt.csv"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", newline="")
    else:
        path.write_bytes(text)
    return path


def error_for(path: Path) -> str:
    with pytest.raises(DataError) as info:
        read_gt_csv(path)
    assert info.value.exit_code == ExitCode.DATA
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


BAD_FILES = {
    # case id: (file text, line the error must name or None, words the message must contain)
    "empty file": ("", None, ["empty file", "filename"]),
    "no header, data first": (row("a.png") + "\n", None, ["bad header"]),
    "header missing a column": (HEADER.rsplit(",", 1)[0] + "\n", None, ["bad header", "28 columns"]),
    "header with an extra column": (HEADER + ",x15\n", None, ["bad header", "30 columns"]),
    "header columns reordered": (HEADER.replace("x1,y1", "y1,x1") + "\n", None, ["bad header"]),
    "semicolon separated": (HEADER.replace(",", ";") + "\n", None, ["bad header", "1 columns"]),
    "row too short": (f"{HEADER}\n{row()}\nb.png,1,2\n", 3, ["3 columns", "expected 29"]),
    "row too long": (f"{HEADER}\n{row()},99\n", 2, ["30 columns", "expected 29"]),
    "a word for a number": (f"{HEADER}\n{row(x3='abc')}\n", 2, ["x3", "'abc'", "not a number"]),
    "decimal comma": (f"{HEADER}\n{row(y2=chr(34) + '1,5' + chr(34))}\n", 2, ["y2", "not a number"]),
    "underscore digits": (f"{HEADER}\n{row(x1='1_0')}\n", 2, ["x1", "not a number"]),
    "hex number": (f"{HEADER}\n{row(x1='0x10')}\n", 2, ["x1", "not a number"]),
    "nan written out": (f"{HEADER}\n{row(x5='nan', y5='nan')}\n", 2, ["x5", "not a finite number", "empty"]),
    "NaN capitalised": (f"{HEADER}\n{row(x5='NaN', y5='NaN')}\n", 2, ["x5", "not a finite number"]),
    "inf": (f"{HEADER}\n{row(x7='inf')}\n", 2, ["x7", "not a finite number"]),
    "-inf": (f"{HEADER}\n{row(y7='-inf')}\n", 2, ["y7", "not a finite number"]),
    "overflowing exponent": (f"{HEADER}\n{row(x2='1e999')}\n", 2, ["x2", "not a finite number"]),
    "only x of a point": (f"{HEADER}\n{row(y9='')}\n", 2, ["point 9", "only one of x9, y9"]),
    "duplicated filename": (f"{HEADER}\n{row('a.png')}\n{row('a.png')}\n", 3, ["duplicate", "line 2"]),
    "duplicate after trimming": (f"{HEADER}\n{row('a.png')}\n{row(' a.png ')}\n", 3, ["duplicate"]),
    "missing filename": (f"{HEADER}\n{row('')}\n", 2, ["empty filename"]),
    "blank filename": (f"{HEADER}\n{row('   ')}\n", 2, ["empty filename"]),
    "parent folder": (f"{HEADER}\n{row('../secret.png')}\n", 2, ["outside images/"]),
    "parent inside the path": (f"{HEADER}\n{row('a/../../b.png')}\n", 2, ["outside images/"]),
    "absolute path": (f"{HEADER}\n{row('/etc/passwd')}\n", 2, ["outside images/"]),
    "dot slash": (f"{HEADER}\n{row('./a.png')}\n", 2, ["outside images/"]),
    "the folder itself": (f"{HEADER}\n{row('.')}\n", 2, ["not a plain path"]),
    "a folder, trailing slash": (f"{HEADER}\n{row('sub/')}\n", 2, ["not a plain path"]),
    "double slash": (f"{HEADER}\n{row('sub//a.png')}\n", 2, ["not a plain path"]),
    "windows drive": (f"{HEADER}\n{row('C:/x.png')}\n", 2, ["forbidden character"]),
    "backslash": (f"{HEADER}\n{row('..' + chr(92) + 'x.png')}\n", 2, ["forbidden character"]),
    "NUL byte": (f"{HEADER}\n{row('a' + chr(0) + '.png')}\n", 2, ["forbidden character"]),
    "newline in a quoted name": (f'{HEADER}\n"a\nb.png",{row("")[1:]}\n', 2, ["forbidden character"]),
    "tab in a name": (f"{HEADER}\n{row('a' + chr(9) + '.png')}\n", 2, ["forbidden character"]),
    "unclosed quote": (f'{HEADER}\n"a.png,{row("")[1:]}\n', 2, ["1 columns"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_gt_csv_is_a_data_error_naming_file_and_line(tmp_path, case):
    text, line, words = BAD_FILES[case]
    message = error_for(write(tmp_path, text))
    if line is not None:
        assert f"gt.csv:{line}:" in message, message
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"


def test_points_outside_the_frame_are_labels(tmp_path):
    """Negative or large coordinates (a cut chin, an upside-down face) read as they are (docs/DESIGN.md)."""
    text = f"{HEADER}\n{row()}\n{row('b.png', y4='-0.5', x12='-11', y14='1e4')}\n"
    names, points = read_gt_csv(write(tmp_path, text))
    assert names == ["a.png", "b.png"]
    assert points[1, 3, 1] == -0.5 and points[1, 11, 0] == -11 and points[1, 13, 1] == 1e4


def test_missing_file(tmp_path):
    message = error_for(tmp_path / "gt.csv")
    assert "not found" in message


def test_a_folder_where_the_file_should_be(tmp_path):
    (tmp_path / "gt.csv").mkdir()
    assert "cannot read" in error_for(tmp_path / "gt.csv")


def test_latin1_bytes_are_refused_with_the_byte_offset(tmp_path):
    text = f"{HEADER}\n{row('café.png')}\n".encode("latin-1")
    message = error_for(write(tmp_path, text))
    assert "not UTF-8" in message and f"byte {text.index(b'caf') + 3}" in message


def test_utf16_is_refused(tmp_path):
    message = error_for(write(tmp_path, f"{HEADER}\n{row()}\n".encode("utf-16")))
    assert "not UTF-8" in message and "byte 0" in message


def test_utf8_with_bom_crlf_spaces_and_blank_lines_is_accepted(tmp_path):
    spaced = " , ".join([" a.png ", *(["12.5"] * 28)])
    text = "\ufeff" + HEADER.upper() + "\r\n" + spaced + "\r\n\r\n" + row("b/c.png", "3") + "\r\n"
    names, points = read_gt_csv(write(tmp_path, text.encode("utf-8")))
    assert names == ["a.png", "b/c.png"]
    assert points.shape == (2, 14, 2) and points.dtype == np.float32
    assert np.all(points[0] == 12.5) and np.all(points[1] == 3)


def test_old_mac_line_endings_are_accepted(tmp_path):
    names, _ = read_gt_csv(write(tmp_path, f"{HEADER}\r{row('a.png')}\r{row('b.png')}\r"))
    assert names == ["a.png", "b.png"]


def test_empty_cells_are_unlabelled_points_and_a_header_only_file_is_empty(tmp_path):
    names, points = read_gt_csv(write(tmp_path, f"{HEADER}\n{row(x14='', y14='')}\n"))
    assert np.isnan(points[0, 13]).all() and np.isfinite(points[0, :13]).all()
    names, points = read_gt_csv(write(tmp_path, HEADER + "\n"))
    assert names == [] and points.shape == (0, 14, 2)


def test_unicode_and_quoted_comma_names_are_kept(tmp_path):
    names, _ = read_gt_csv(write(tmp_path, f'{HEADER}\n{row("ünï.png")}\n"a,b.png",{row("")[1:]}\n'))
    assert names == ["ünï.png", "a,b.png"]


# --- read_split: names must stay inside images/, also through symbolic links --------------------


def make_split(tmp_path: Path, names: list[str]) -> Path:
    split = tmp_path / "train"
    (split / "images").mkdir(parents=True)
    (split / "gt.csv").write_text(HEADER + "\n" + "\n".join(row(n) for n in names) + "\n")
    return split


def test_split_without_folder_or_labels(tmp_path):
    with pytest.raises(DataError, match="split folder not found"):
        read_split(tmp_path / "nope")
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match=r"gt\.csv: label file not found"):
        read_split(tmp_path / "train")


def test_symlinked_folder_leading_outside_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.png").write_bytes(b"not read")
    split = make_split(tmp_path, ["link/x.png"])
    os.symlink(outside, split / "images" / "link")
    with pytest.raises(DataError) as info:
        read_split(split)
    assert "link/x.png" in str(info.value) and "resolves outside images/" in str(info.value)
    assert str(split / "gt.csv") in str(info.value)


def test_symlinked_file_leading_outside_is_refused(tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"x")
    split = make_split(tmp_path, ["a.png"])
    os.symlink(secret, split / "images" / "a.png")
    with pytest.raises(DataError, match="resolves outside images/"):
        read_split(split)


def test_symlinks_inside_images_and_a_symlinked_images_folder_are_fine(tmp_path):
    real_images = tmp_path / "store"
    (real_images / "sub").mkdir(parents=True)
    split = tmp_path / "train"
    split.mkdir()
    os.symlink(real_images, split / "images")  # a dataset whose images live on another disk
    os.symlink(real_images / "sub", real_images / "alias")
    (split / "gt.csv").write_text(f"{HEADER}\n{row('sub/a.png')}\n{row('alias/b.png')}\n")
    assert read_split(split).filenames == ("sub/a.png", "alias/b.png")
