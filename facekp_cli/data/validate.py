"""Dataset checks behind `facekp data validate`: every problem found, not just the first.

Errors make a dataset unusable for training or evaluation (unreadable labels or images, missing
files, coordinates several image sides away, names leaving images/, left/right labels mirrored);
warnings are worth a look but do not stop anything (points outside the frame, unlabelled images,
stray files, images that appear in both splits, a few crossed left/right pairs).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facekp_cli.data.format import (
    GT_FILE,
    IMAGES_DIR,
    SPLITS,
    dataset_splits,
    read_gt_csv,
    safe_image_path,
)
from facekp_cli.data.images import decode_image
from facekp_cli.errors import DataError
from facekp_cli.keypoints import LEFT_RIGHT_PAIRS, NAMES
from facekp_cli.media import is_image_file

ERROR, WARNING = "error", "warning"
# A point outside the image is a label (a cut chin, an upside-down face); one this many image
# sides away is a typo or a unit mix-up.
ABSURD_SIDES = 2.0


@dataclass(frozen=True)
class Issue:
    severity: str  # "error" or "warning"
    kind: str  # a short stable code, e.g. "missing-file", "outside-frame", "swapped-left-right"
    file: str  # the file the problem is in (gt.csv with its line, or an image)
    message: str


@dataclass(frozen=True)
class SplitSummary:
    split: str
    rows: int  # gt.csv rows that parsed
    images: int  # image files under images/
    decoded: int  # labelled images that decoded
    labelled_points: int
    unlabelled_images: int
    errors: int
    warnings: int


@dataclass(frozen=True)
class ValidationReport:
    root: Path
    splits: tuple[SplitSummary, ...]
    issues: tuple[Issue, ...]

    @property
    def errors(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity == ERROR)

    @property
    def warnings(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity == WARNING)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "splits": [asdict(s) for s in self.splits],
            "issues": [asdict(i) for i in self.issues],
        }


@dataclass
class _SplitCheck:
    split_dir: Path
    issues: list[Issue] = field(default_factory=list)

    def add(self, severity: str, kind: str, file: Path | str, message: str) -> None:
        self.issues.append(Issue(severity, kind, str(file), message))


def validate_dataset(root: str | Path) -> ValidationReport:
    """Check both splits of a dataset root (or the one split whose gt.csv is given); raises DataError
    only when there is no dataset at all."""
    root = Path(root)
    if root.is_file():
        if root.name != GT_FILE:
            raise DataError(f"{root}: a file, not a dataset; give the dataset folder or a split's {GT_FILE}")
        root = root.parent  # `data validate faces_data/train/gt.csv`: that split, its images beside it
    if not root.is_dir():
        raise DataError(
            f"{root}: dataset folder not found (make one with `facekp data synth`, "
            f"`facekp data pull` or `facekp data import`)"
        )
    present = dataset_splits(root)
    if not present:
        raise DataError(
            f"{root}: no train/ or test/ split and no {GT_FILE} inside; not a facekp dataset folder"
        )
    summaries, issues = [], []
    hashes: dict[str, dict[str, str]] = {}
    for split, split_dir in present.items():
        summary, split_issues, hashes[split] = _check_split(split_dir, split)
        summaries.append(summary)
        issues.extend(split_issues)
    if set(hashes) == set(SPLITS):
        issues.extend(_leaks(root, hashes))
    return ValidationReport(root, tuple(summaries), tuple(issues))


def _check_split(split_dir: Path, split: str) -> tuple[SplitSummary, list[Issue], dict[str, str]]:
    check = _SplitCheck(split_dir)
    gt_path, images_dir = split_dir / GT_FILE, split_dir / IMAGES_DIR
    row_errors: list[DataError] = []
    try:
        filenames, keypoints = read_gt_csv(gt_path, row_errors)
    except DataError as exc:  # a missing file or an unreadable header: nothing else to check here
        check.add(ERROR, "unreadable-labels", gt_path, str(exc))
        filenames, keypoints = [], np.zeros((0, len(NAMES), 2), np.float32)
    for exc in row_errors:
        check.add(ERROR, "bad-row", gt_path, str(exc))
    files = sorted(p for p in images_dir.rglob("*") if p.is_file()) if images_dir.is_dir() else []
    if not images_dir.is_dir():
        check.add(ERROR, "missing-images-dir", images_dir, f"{images_dir}: images folder not found")

    decoded, hashes = 0, {}
    for name, points in zip(filenames, keypoints, strict=True):
        where = f"{gt_path}: {name}"
        try:
            path = safe_image_path(images_dir, name, where)
        except DataError as exc:
            check.add(ERROR, "outside-images-dir", gt_path, str(exc))
            continue
        if not path.is_file():
            check.add(ERROR, "missing-file", path, f"{where}: image file not found")
            continue
        try:
            image = decode_image(path)
        except DataError as exc:
            check.add(ERROR, "undecodable-image", path, str(exc))
            continue
        decoded += 1
        hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        _check_points(check, where, points, image.shape[1], image.shape[0])

    labelled = {Path(images_dir, n).as_posix() for n in filenames}
    unlabelled = 0
    for path in files:
        if path.as_posix() in labelled:
            continue
        rel = path.relative_to(images_dir).as_posix()
        if is_image_file(path):
            unlabelled += 1
            check.add(WARNING, "unlabelled-image", path, f"{path}: image has no row in {gt_path} ({rel})")
            try:  # every image must decode, labelled or not
                decode_image(path)
            except DataError as exc:
                check.add(ERROR, "undecodable-image", path, str(exc))
        else:
            check.add(WARNING, "stray-file", path, f"{path}: not an image file; ignored")

    n_err = sum(i.severity == ERROR for i in check.issues)
    summary = SplitSummary(
        split=split,
        rows=len(filenames),
        images=sum(is_image_file(p) for p in files),
        decoded=decoded,
        labelled_points=int(np.isfinite(keypoints[..., 0]).sum()),
        unlabelled_images=unlabelled,
        errors=n_err,
        warnings=len(check.issues) - n_err,
    )
    return summary, check.issues, hashes


def _check_points(check: _SplitCheck, where: str, points: np.ndarray, width: int, height: int) -> None:
    labelled = np.isfinite(points[:, 0])
    if not labelled.any():
        check.add(WARNING, "no-points", where, f"{where}: row has no labelled point")
        return
    x, y = points[:, 0], points[:, 1]
    absurd = labelled & (
        (x < -ABSURD_SIDES * width)
        | (x > (1 + ABSURD_SIDES) * width)
        | (y < -ABSURD_SIDES * height)
        | (y > (1 + ABSURD_SIDES) * height)
    )
    outside = labelled & ~absurd & ((x < 0) | (x > width) | (y < 0) | (y > height))
    for k in np.flatnonzero(absurd | outside):
        severity, kind, what = (
            (ERROR, "absurd-coordinate", f"lies more than {ABSURD_SIDES:g} image sides outside the")
            if absurd[k]
            else (WARNING, "outside-frame", "lies outside the frame of the")
        )
        check.add(
            severity,
            kind,
            where,
            f"{where}: point {k + 1} ({NAMES[k]}) at ({x[k]:.1f}, {y[k]:.1f}) {what} {width}x{height} image",
        )
    swapped, compared = crossed_pairs(points)
    if compared and swapped:
        names = ", ".join(f"{NAMES[i]}/{NAMES[j]}" for i, j in swapped)
        if len(swapped) * 2 > compared:
            check.add(
                ERROR,
                "swapped-left-right",
                where,
                f"{where}: {len(swapped)} of {compared} left/right pairs are mirrored ({names}); the labels "
                f"are likely named from the subject's view instead of the image's",
            )
        else:
            check.add(WARNING, "crossed-pair", where, f"{where}: left/right pair crossed: {names}")


def crossed_pairs(points: np.ndarray) -> tuple[list[tuple[int, int]], int]:
    """Left/right pairs whose left point is not left of its right partner, in the face's own frame.

    The face's 'down' runs from the eyes and brows to the nose and mouth, so a rolled but upright
    face is judged correctly; faces more than 60 degrees from upright are not judged at all.
    """
    points = np.asarray(points, np.float64)
    upper = points[:10][np.isfinite(points[:10, 0])]
    lower = points[10:][np.isfinite(points[10:, 0])]
    down = np.array([0.0, 1.0])
    if len(upper) and len(lower):
        axis = lower.mean(axis=0) - upper.mean(axis=0)
        norm = np.linalg.norm(axis)
        if norm > 0:
            down = axis / norm
            if down[1] < 0.5:  # more than 60 degrees from upright: 'left' is ambiguous
                return [], 0
    right = np.array([down[1], -down[0]])
    swapped, compared = [], 0
    for i, j in LEFT_RIGHT_PAIRS:
        if np.isfinite(points[i, 0]) and np.isfinite(points[j, 0]):
            compared += 1
            if float((points[j] - points[i]) @ right) <= 0:
                swapped.append((i, j))
    return swapped, compared


def _leaks(root: Path, hashes: dict[str, dict[str, str]]) -> list[Issue]:
    test_by_hash = {h: name for name, h in hashes["test"].items()}
    issues = []
    for name, digest in hashes["train"].items():
        if digest in test_by_hash:
            issues.append(
                Issue(
                    WARNING,
                    "train-test-duplicate",
                    str(root / "test" / IMAGES_DIR / test_by_hash[digest]),
                    f"test image {test_by_hash[digest]!r} is byte-identical to train image {name!r}",
                )
            )
    return issues
