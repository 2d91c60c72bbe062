"""Convert public keypoint datasets to facekp's format (docs/DESIGN.md), point mappings included.

Bad input rows are skipped and reported (ImportResult.skipped: where and why); a file that is
not the expected format at all, or one where no row survives, raises DataError.
"""

from __future__ import annotations

import csv
import io
import math
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facekp_cli.data.format import GT_FILE, IMAGES_DIR, SPLITS, safe_image_path, write_gt_csv
from facekp_cli.data.images import decode_image
from facekp_cli.errors import DataError, UsageError
from facekp_cli.keypoints import NUM_KEYPOINTS
from facekp_cli.media import IMAGE_EXTENSIONS

KAGGLE_SIDE = 96
# Our 14 points from Kaggle's columns. Kaggle names points from the subject's view, so its
# "left_eye" is on the image's right: every left/right is swapped (docs/DESIGN.md).
KAGGLE_COLUMNS: tuple[tuple[str, ...], ...] = (
    ("right_eyebrow_outer_end",),
    ("right_eyebrow_inner_end",),
    ("left_eyebrow_inner_end",),
    ("left_eyebrow_outer_end",),
    ("right_eye_outer_corner",),
    ("right_eye_center",),
    ("right_eye_inner_corner",),
    ("left_eye_inner_corner",),
    ("left_eye_center",),
    ("left_eye_outer_corner",),
    ("nose_tip",),
    ("mouth_right_corner",),
    ("mouth_center_top_lip", "mouth_center_bottom_lip"),  # centre = mean of both, only when both exist
    ("mouth_left_corner",),
)
# iBUG / 300W 68-point indices (0-based) averaged into each of our points.
IBUG_INDICES: tuple[tuple[int, ...], ...] = (
    (17,),
    (21,),
    (22,),
    (26,),
    (36,),
    (36, 37, 38, 39, 40, 41),
    (39,),
    (42,),
    (42, 43, 44, 45, 46, 47),
    (45,),
    (30,),
    (48,),
    (62, 66),
    (54,),
)


@dataclass(frozen=True)
class SkippedRow:
    where: str  # file and line, or file
    reason: str


@dataclass(frozen=True)
class ImportResult:
    out_dir: Path
    source: str  # "kaggle" or "ibug"
    train_count: int
    test_count: int
    labelled_points: int
    skipped: tuple[SkippedRow, ...]


def _split_indices(n: int, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of test rows: a seeded random share, at least one each when possible."""
    if not 0.0 <= test_fraction < 1.0:
        raise UsageError(f"--test-fraction must be in [0, 1) (got {test_fraction})")
    test = round(n * test_fraction)
    if n >= 2 and test_fraction > 0:
        test = min(max(test, 1), n - 1)
    mask = np.zeros(n, bool)
    mask[np.random.default_rng(seed).permutation(n)[:test]] = True
    return mask


class _Writer:
    """Builds a dataset in a temporary folder beside out_dir and moves it into place on finish()."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and any(self.out_dir.iterdir()):
            raise UsageError(f"{self.out_dir}: output folder exists and is not empty; choose a new --out")
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(
            tempfile.mkdtemp(prefix=f".{self.out_dir.name}.", suffix=".tmp", dir=self.out_dir.parent)
        )
        for split in SPLITS:
            (self.tmp / split / IMAGES_DIR).mkdir(parents=True)
        self.rows: dict[str, list[tuple[str, np.ndarray]]] = {s: [] for s in SPLITS}

    def add(self, split: str, name: str, image_bgr: np.ndarray, points: np.ndarray) -> None:
        import cv2

        path = self.tmp / split / IMAGES_DIR / name
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if name.endswith(".jpg") else []
        if not cv2.imwrite(str(path), image_bgr, params):
            raise DataError(f"{path}: cannot write image")
        self.rows[split].append((name, points))

    def finish(self) -> tuple[int, int, int]:
        for split, rows in self.rows.items():
            points = np.array([p for _, p in rows], np.float64).reshape(len(rows), NUM_KEYPOINTS, 2)
            write_gt_csv(self.tmp / split / GT_FILE, [n for n, _ in rows], points)
        if self.out_dir.exists():
            self.out_dir.rmdir()
        self.tmp.rename(self.out_dir)
        labelled = sum(int(np.isfinite(p[:, 0]).sum()) for rows in self.rows.values() for _, p in rows)
        return len(self.rows["train"]), len(self.rows["test"]), labelled

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _kaggle_point(row: dict[str, str], columns: tuple[str, ...]) -> tuple[float, float]:
    values = []
    for name in columns:
        x, y = (row.get(f"{name}_x") or "").strip(), (row.get(f"{name}_y") or "").strip()
        if not x or not y:
            return math.nan, math.nan
        values.append((float(x), float(y)))
    xs, ys = zip(*values, strict=True)
    return sum(xs) / len(xs), sum(ys) / len(ys)


def import_kaggle(csv_path: Path, out_dir: Path, test_fraction: float = 0.1, seed: int = 0) -> ImportResult:
    """Kaggle Facial Keypoints Detection training.csv -> facekp format (96x96 grey PNGs)."""
    csv_path = Path(csv_path)
    try:
        data = csv_path.read_bytes()
    except OSError as exc:
        raise DataError(f"{csv_path}: cannot read ({exc.strerror or exc})") from exc
    try:
        # Kaggle's file is ASCII. Another encoding cannot be told apart safely (Latin-1 decodes
        # any bytes), so it is refused, like gt.csv, rather than read as something else.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{csv_path}:{line}: not UTF-8 text (byte {exc.start}: {data[exc.start : exc.start + 1]!r}); "
            "save the file as UTF-8 CSV"
        ) from None
    del data
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # the Image column is ~35 kB per row
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        header = set(reader.fieldnames or [])
        if "Image" not in header:
            raise DataError(f"{csv_path}: no 'Image' column; not a Kaggle Facial Keypoints CSV")
        known = {f"{c}_{a}" for cols in KAGGLE_COLUMNS for c in cols for a in "xy"}
        if not header & known:
            raise DataError(f"{csv_path}: no keypoint columns (is this the unlabelled test.csv?)")
        rows = list(enumerate(reader, start=2))
    test_mask = _split_indices(len(rows), test_fraction, seed)
    writer = _Writer(out_dir)
    skipped: list[SkippedRow] = []
    try:
        for (line_no, row), is_test in zip(rows, test_mask, strict=True):
            where = f"{csv_path}:{line_no}"
            try:
                pixels = np.array((row.get("Image") or "").split(), dtype=np.float64)
                if pixels.size != KAGGLE_SIDE * KAGGLE_SIDE:
                    raise ValueError(f"Image has {pixels.size} values, expected {KAGGLE_SIDE * KAGGLE_SIDE}")
                points = np.array([_kaggle_point(row, cols) for cols in KAGGLE_COLUMNS], np.float64)
            except ValueError as exc:
                skipped.append(SkippedRow(where, str(exc)))
                continue
            # Points outside the 96x96 frame are labels like any other (docs/DESIGN.md): kept as they are.
            image = np.clip(pixels, 0, 255).astype(np.uint8).reshape(KAGGLE_SIDE, KAGGLE_SIDE)
            writer.add("test" if is_test else "train", f"{line_no - 1:05d}.png", image, points)
        if not any(writer.rows.values()):
            raise DataError(
                f"{csv_path}: no usable row ({len(skipped)} skipped, first: {skipped[0].reason})"
                if skipped
                else f"{csv_path}: no data rows"
            )
        train, test, labelled = writer.finish()
    except BaseException:
        writer.abort()
        raise
    return ImportResult(Path(out_dir), "kaggle", train, test, labelled, tuple(skipped))


_PTS_POINT = re.compile(r"^\s*(-?[\d.eE+-]+)\s+(-?[\d.eE+-]+)\s*$")


def read_pts(path: Path) -> np.ndarray:
    """A 300W/iBUG .pts file -> (N, 2) points in docs/DESIGN.md pixels (their 1-based pixel centres - 0.5)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    body = text.split("{", 1)[1].split("}", 1)[0] if "{" in text else ""
    points = []
    for line in body.splitlines():
        if not line.strip():
            continue
        match = _PTS_POINT.match(line)
        if not match:
            raise DataError(f"{path}: bad point line {line.strip()!r}")
        points.append((float(match.group(1)), float(match.group(2))))
    count = re.search(r"n_points\s*:\s*(\d+)", text)
    if count is None or int(count.group(1)) != len(points):
        raise DataError(f"{path}: not a .pts file (header n_points does not match {len(points)} points)")
    if len(points) != 68:
        raise DataError(f"{path}: {len(points)} points; only the 68-point iBUG layout is supported")
    # 300W coordinates are 1-based (Matlab): pixel (1, 1)'s centre is our (0.5, 0.5).
    return np.array(points, np.float64) - 0.5


def _find_image(pts: Path) -> Path | None:
    stems = [pts.stem, re.sub(r"_\d+$", "", pts.stem)]  # AFW/HELEN: photo_1.pts, photo_2.pts -> photo.jpg
    for stem in stems:
        for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
            candidate = pts.with_name(stem + ext)
            if candidate.is_file():
                return candidate
    return None


def crop_box(points68: np.ndarray, width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """A crop around the landmarks with `margin` x face size on each side (more above, for the forehead)."""
    x0, y0 = points68.min(axis=0)
    x1, y1 = points68.max(axis=0)
    size = max(x1 - x0, y1 - y0)
    left, right = x0 - margin * size, x1 + margin * size
    top, bottom = y0 - (margin + 0.25) * size, y1 + margin * size
    return (
        max(0, math.floor(left)),
        max(0, math.floor(top)),
        min(width, math.ceil(right)),
        min(height, math.ceil(bottom)),
    )


def import_ibug(
    src_dir: Path,
    out_dir: Path,
    test_fraction: float = 0.1,
    seed: int = 0,
    margin: float = 0.2,
    max_side: int = 320,
) -> ImportResult:
    """Images with 68-point .pts files (300W, iBUG, HELEN, LFPW, AFW) -> face crops with 14 points."""
    import cv2

    if not (math.isfinite(margin) and margin >= 0):  # nan/inf would reach math.floor as a traceback
        raise UsageError(f"--margin must be a finite number >= 0 (got {margin})")
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise DataError(f"{src_dir}: folder not found")
    pts_files = sorted(src_dir.rglob("*.pts"))
    if not pts_files:
        raise DataError(f"{src_dir}: no .pts landmark files found")
    test_mask = _split_indices(len(pts_files), test_fraction, seed)
    writer = _Writer(out_dir)
    skipped: list[SkippedRow] = []
    try:
        for pts, is_test in zip(pts_files, test_mask, strict=True):
            image_path = _find_image(pts)
            if image_path is None:
                skipped.append(SkippedRow(str(pts), "no image with the same name beside it"))
                continue
            try:
                # the same rule as gt.csv names: no symlink may lead outside the source folder
                for path in (pts, image_path):
                    safe_image_path(
                        src_dir, path.relative_to(src_dir).as_posix(), str(path), "the source folder"
                    )
                points68 = read_pts(pts)
                image = decode_image(image_path)
            except DataError as exc:
                skipped.append(SkippedRow(str(pts), str(exc)))
                continue
            height, width = image.shape[:2]
            x0, y0, x1, y1 = crop_box(points68, width, height, margin)
            if x1 - x0 < 8 or y1 - y0 < 8:
                skipped.append(SkippedRow(str(pts), "landmarks lie outside the image"))
                continue
            crop = image[y0:y1, x0:x1]
            points = np.array([points68[list(idx)].mean(axis=0) for idx in IBUG_INDICES]) - (x0, y0)
            scale = min(1.0, max_side / max(crop.shape[:2]))
            if scale < 1.0:
                size = (max(8, round(crop.shape[1] * scale)), max(8, round(crop.shape[0] * scale)))
                points *= (size[0] / crop.shape[1], size[1] / crop.shape[0])
                crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            # A crop clamped at the border can leave points outside it: kept, as labels outside the frame.
            rel = pts.relative_to(src_dir).with_suffix("")
            name = "__".join(rel.parts) + (".png" if image_path.suffix.lower() == ".png" else ".jpg")
            writer.add("test" if is_test else "train", name, crop[..., ::-1], points)
        if not any(writer.rows.values()):
            raise DataError(f"{src_dir}: no usable face ({len(skipped)} skipped, first: {skipped[0].reason})")
        train, test, labelled = writer.finish()
    except BaseException:
        writer.abort()
        raise
    return ImportResult(Path(out_dir), "ibug", train, test, labelled, tuple(skipped))
