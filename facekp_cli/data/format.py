"""The on-disk dataset format (docs/DESIGN.md, normative): `<split>/images/*` plus `<split>/gt.csv`.

This module is the only reader and writer of gt.csv. Keypoints are a float32 array of shape
(N, 14, 2) in displayed-image pixels, NaN where a point is not labelled.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from facekp_cli.atomic import write_text_atomic
from facekp_cli.errors import DataError
from facekp_cli.keypoints import CSV_HEADER, NUM_KEYPOINTS

GT_FILE = "gt.csv"
IMAGES_DIR = "images"
SPLITS = ("train", "test")


@dataclass(frozen=True)
class LabelledSplit:
    """One split of a dataset: image filenames (relative to images/) and their keypoints."""

    root: Path
    filenames: tuple[str, ...]
    keypoints: np.ndarray  # (N, 14, 2) float32, NaN = unlabelled

    @property
    def images_dir(self) -> Path:
        return self.root / IMAGES_DIR

    def image_path(self, index: int) -> Path:
        return self.images_dir / self.filenames[index]

    def __len__(self) -> int:
        return len(self.filenames)


def check_filename(filename: str, where: str) -> str:
    """Reject names that could leave images/: absolute paths, '..', drive letters, backslashes."""
    if not filename:
        raise DataError(f"{where}: empty filename")
    if "\\" in filename or ":" in filename or any(ord(c) < 32 or ord(c) == 127 for c in filename):
        raise DataError(f"{where}: filename {filename!r} contains a forbidden character")
    pure = PurePosixPath(filename)
    if pure.is_absolute() or any(part in ("..", "") for part in pure.parts) or filename.startswith("./"):
        raise DataError(f"{where}: filename {filename!r} points outside images/")
    # PurePosixPath drops '.' and empty segments, so 'a/./b', 'a//b', '.' and 'dir/' are checked here.
    if any(part in ("", ".") for part in filename.split("/")):
        raise DataError(f"{where}: filename {filename!r} is not a plain path to a file inside images/")
    return filename


def safe_image_path(images_dir: Path, filename: str, where: str, folder: str = "images/") -> Path:
    check_filename(filename, where)
    path = (images_dir / filename).resolve()
    if not path.is_relative_to(images_dir.resolve()):  # a symlinked folder must not lead out either
        raise DataError(f"{where}: filename {filename!r} resolves outside {folder}")
    return images_dir / filename


def _parse_coordinate(cell: str, where: str, column: str) -> float:
    try:
        if "_" in cell:  # float() takes '1_0' as 10; a CSV number never has one
            raise ValueError(cell)
        value = float(cell)
    except ValueError:
        raise DataError(f"{where}: column {column}: {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(
            f"{where}: column {column}: {cell!r} is not a finite number (leave the cell empty "
            f"for an unlabelled point)"
        )
    # A negative or too large coordinate is a point outside the frame (a cropped chin, an upside-down
    # face): a label like any other (docs/DESIGN.md). Only `data validate`, which knows the image size,
    # judges whether it is absurd.
    return value


def parse_gt_csv(
    text: str, source: str, row_errors: list[DataError] | None = None
) -> tuple[list[str], np.ndarray]:
    """Parse gt.csv text; every problem raises DataError naming `source`, the row and the column.

    With `row_errors` (a list), a bad row is appended there and skipped instead of raising, so a
    validator can report every bad row at once; a bad header still raises.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if header is None:
        raise DataError(f"{source}: empty file, expected the header {','.join(CSV_HEADER[:3])},...")
    header = [cell.strip().lower() for cell in header]
    if header != list(CSV_HEADER):
        got = ",".join(header[:4]) + ("..." if len(header) > 4 else "")
        raise DataError(
            f"{source}: bad header ({len(header)} columns: {got}); expected {len(CSV_HEADER)} columns "
            f"filename,x1,y1,...,x{NUM_KEYPOINTS},y{NUM_KEYPOINTS}"
        )
    filenames: list[str] = []
    points: list[np.ndarray] = []
    first_row: dict[str, int] = {}
    for line_no, row in enumerate(rows, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            name, coords = _parse_row(row, f"{source}:{line_no}", line_no, first_row)
        except DataError as exc:
            if row_errors is None:
                raise
            row_errors.append(exc)
            continue
        filenames.append(name)
        points.append(coords)
    keypoints = np.stack(points) if points else np.zeros((0, NUM_KEYPOINTS, 2), dtype=np.float32)
    return filenames, keypoints


def _parse_row(row: list[str], where: str, line_no: int, first_row: dict[str, int]):
    if len(row) != len(CSV_HEADER):
        raise DataError(f"{where}: {len(row)} columns, expected {len(CSV_HEADER)}")
    name = check_filename(row[0].strip(), where)
    if name in first_row:
        raise DataError(f"{where}: duplicate filename {name!r} (first on line {first_row[name]})")
    coords = np.full((NUM_KEYPOINTS, 2), np.nan, dtype=np.float32)
    for k in range(NUM_KEYPOINTS):
        x_cell, y_cell = row[1 + 2 * k].strip(), row[2 + 2 * k].strip()
        if bool(x_cell) != bool(y_cell):
            raise DataError(f"{where}: point {k + 1} has only one of x{k + 1}, y{k + 1}")
        if x_cell:
            coords[k, 0] = _parse_coordinate(x_cell, where, f"x{k + 1}")
            coords[k, 1] = _parse_coordinate(y_cell, where, f"y{k + 1}")
    first_row[name] = line_no
    return name, coords


def read_gt_csv(
    path: str | os.PathLike[str], row_errors: list[DataError] | None = None
) -> tuple[list[str], np.ndarray]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8 CSV") from None
    return parse_gt_csv(text, str(path), row_errors)


def format_gt_csv(filenames: list[str] | tuple[str, ...], keypoints: np.ndarray) -> str:
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(len(filenames), NUM_KEYPOINTS, 2)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for name, coords in zip(filenames, keypoints, strict=True):
        cells = ["" if math.isnan(v) else f"{v:.4f}" for v in coords.reshape(-1)]
        writer.writerow([name, *cells])
    return out.getvalue()


def write_gt_csv(path: str | os.PathLike[str], filenames, keypoints: np.ndarray) -> Path:
    """Write gt.csv atomically."""
    return write_text_atomic(path, format_gt_csv(list(filenames), keypoints))


def is_split_folder(path: str | os.PathLike[str]) -> bool:
    """A folder that is one split itself (images/ + gt.csv), as real datasets often come."""
    return (Path(path) / GT_FILE).is_file()


def dataset_splits(root: str | os.PathLike[str]) -> dict[str, Path]:
    """The splits of a dataset folder by name: its train/ and test/, or the folder itself, named after
    it, when it is a single split (images/ + gt.csv); empty when it is neither."""
    root = Path(root)
    present = {name: root / name for name in SPLITS if (root / name).is_dir()}
    if not present and is_split_folder(root):
        return {root.name or str(root): root}
    return present


def read_split(split_dir: str | os.PathLike[str]) -> LabelledSplit:
    """Read one split folder (…/train or …/test) and check that filenames stay inside images/."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: dataset split folder not found")
    filenames, keypoints = read_gt_csv(split_dir / GT_FILE)
    images_dir = split_dir / IMAGES_DIR
    for name in filenames:
        safe_image_path(images_dir, name, f"{split_dir / GT_FILE}: {name}")
    return LabelledSplit(split_dir, tuple(filenames), keypoints)
