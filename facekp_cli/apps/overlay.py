"""Pictures with transparency (glasses, a mask, a moustache) placed on faces by their keypoints.

An asset is an RGBA image plus two anchor points in its own pixels and the two face points they
belong on (e.g. the glasses' lens centres on the pupils). Two point pairs fix a similarity
transform exactly: the asset turns with the line between the points and scales with their
distance. `scale` then enlarges it about the points' midpoint, and `offset` moves it in units of
the points' distance, x along their line and y across it (down the face), so the placement
follows a rolled head. Assets are declared in a TOML file (facekp_cli/overlay_assets/assets.toml
ships three; `overlay.assets_file` adds yours).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from facekp_cli.compat import tomllib
from facekp_cli.errors import DataError, UsageError
from facekp_cli.keypoints import NAMES

ASSETS_PACKAGE_DIR = "overlay_assets"
ASSETS_FILE = "assets.toml"


@dataclass(frozen=True)
class Asset:
    name: str
    image: np.ndarray  # (h, w, 4) uint8 RGBA
    anchors: np.ndarray  # (2, 2) asset pixels
    points: tuple[int, int]  # indices of the face points the anchors go on
    scale: float = 1.0
    offset: tuple[float, float] = (0.0, 0.0)  # in anchor distances: along the line, across it (down)


def shipped_assets_file() -> Path:
    return Path(str(resources.files("facekp_cli").joinpath(ASSETS_PACKAGE_DIR, ASSETS_FILE)))


def asset_names(path: str | os.PathLike[str] | None = None) -> list[str]:
    """Names declared in an assets file (the shipped one by default); cheap, for completion."""
    try:
        with open(path or shipped_assets_file(), "rb") as fh:
            return sorted(tomllib.load(fh))
    except (OSError, tomllib.TOMLDecodeError):
        return []


def _finite(value) -> bool:
    """TOML has `inf` and `nan`; as a scale or offset they would put NaN into every warped pixel."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _asset_picture(path: Path, file: str, where: str) -> Path:
    """The asset's picture, which must lie beside its assets file (a shared assets file must not
    make facekp read, and paste into outputs, a file from elsewhere)."""
    relative = Path(file)
    if relative.is_absolute() or ".." in relative.parts or not file.strip():
        raise DataError(f"{where}: 'file' {file!r} must be a path inside the assets file's folder")
    folder = path.parent.resolve()
    picture = (path.parent / relative).resolve()
    if folder not in picture.parents:
        raise DataError(f"{where}: 'file' {file!r} resolves outside the assets file's folder")
    return path.parent / relative


def _pair(value, what: str, where: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2 or not all(_finite(v) for v in value):
        raise DataError(f"{where}: {what} must be two finite numbers, e.g. [0.0, 0.0]; got {value!r}")
    return float(value[0]), float(value[1])


def load_asset(name: str, path: str | os.PathLike[str] | None = None) -> Asset:
    """One asset from an assets file; its image is read relative to that file."""
    path = Path(path) if path is not None else shipped_assets_file()
    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: assets file not found") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"{path}: not a readable assets file ({exc})") from exc
    if name not in table or not isinstance(table[name], dict):
        known = ", ".join(sorted(k for k, v in table.items() if isinstance(v, dict))) or "none"
        raise UsageError(f"{path}: no asset named '{name}' (known: {known})")
    entry, where = table[name], f"{path} [{name}]"
    unknown = set(entry) - {"file", "anchors", "points", "scale", "offset"}
    if unknown:
        raise DataError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    if not isinstance(entry.get("file"), str):
        raise DataError(f"{where}: 'file' (the PNG with transparency) is missing")
    anchors = entry.get("anchors")
    if not isinstance(anchors, list) or len(anchors) != 2:
        raise DataError(f"{where}: 'anchors' must be two [x, y] points in the asset's pixels")
    anchor_points = np.array([_pair(a, "each anchor", where) for a in anchors], np.float64)
    points = entry.get("points")
    if not isinstance(points, list) or len(points) != 2 or not all(p in NAMES for p in points):
        raise DataError(
            f"{where}: 'points' must be two keypoint names (e.g. left_pupil, right_pupil); got {points!r}"
        )
    if np.linalg.norm(anchor_points[1] - anchor_points[0]) < 1e-6 or points[0] == points[1]:
        raise DataError(f"{where}: the two anchors (and the two points) must differ")
    scale = entry.get("scale", 1.0)
    if not _finite(scale) or scale <= 0:
        raise DataError(f"{where}: 'scale' must be a positive finite number; got {scale!r}")
    offset = _pair(entry.get("offset", [0.0, 0.0]), "'offset'", where)
    image = read_rgba(_asset_picture(path, entry["file"], where), f"{where}: ")
    return Asset(
        name, image, anchor_points, (NAMES.index(points[0]), NAMES.index(points[1])), float(scale), offset
    )


def read_rgba(path: Path, where: str = "") -> np.ndarray:
    """An asset picture as RGBA uint8 (a picture without transparency is fully opaque)."""
    from PIL import Image

    try:
        with Image.open(path) as picture:
            if picture.width * picture.height > 16_000_000:
                raise DataError(f"{path}: asset too large ({picture.width}x{picture.height} px)")
            return np.asarray(picture.convert("RGBA"), np.uint8).copy()
    except FileNotFoundError as exc:
        raise DataError(f"{where}{path}: asset picture not found") from exc
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{where}{path}: cannot read asset picture ({exc})") from exc


def placement(asset: Asset, face_points: np.ndarray) -> np.ndarray | None:
    """The 2x3 matrix from asset pixels to frame pixels for one face, or None if its points are missing."""
    p1, p2 = (np.asarray(face_points, np.float64)[i] for i in asset.points)
    if not np.isfinite([p1, p2]).all():
        return None
    a1, a2 = asset.anchors
    along_asset, along_face = a2 - a1, p2 - p1
    distance = float(np.linalg.norm(along_face))
    if distance < 1e-6:
        return None
    # the similarity taking a1 -> p1 and a2 -> p2, as a complex ratio (rotation and scale in one)
    ratio = complex(*along_face) / complex(*along_asset)
    linear = np.array([[ratio.real, -ratio.imag], [ratio.imag, ratio.real]]) * asset.scale
    unit = along_face / distance
    across = np.array([-unit[1], unit[0]])  # the line turned 90 degrees: down the face when it is level
    middle = (p1 + p2) / 2 + distance * (asset.offset[0] * unit + asset.offset[1] * across)
    shift = middle - linear @ ((a1 + a2) / 2)
    return np.hstack([linear, shift[:, None]])


def draw_asset(frame: np.ndarray, asset: Asset, matrix: np.ndarray) -> None:
    """Blend the asset into an RGB frame in place, warping only the region it covers."""
    import cv2

    h, w = asset.image.shape[:2]
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64) @ matrix[:, :2].T + matrix[:, 2]
    height, width = frame.shape[:2]
    x0, y0 = np.floor(corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return
    # facekp's coordinates put the origin at a pixel's corner, OpenCV's at its centre
    local = matrix.copy()
    local[:, 2] += matrix[:, :2] @ (0.5, 0.5) - 0.5 - np.array([x0, y0])
    warped = cv2.warpAffine(
        asset.image,
        local,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0, 0),
    )
    alpha = warped[..., 3:4].astype(np.float32) / 255.0
    region = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = (region * (1 - alpha) + warped[..., :3].astype(np.float32) * alpha + 0.5).astype(
        np.uint8
    )


def overlay_faces(image: np.ndarray, asset: Asset, faces_points) -> np.ndarray:
    """A copy of an RGB image with the asset on every face ((14, 2) points each)."""
    canvas = np.ascontiguousarray(image.copy())
    for points in faces_points:
        matrix = placement(asset, points)
        if matrix is not None:
            draw_asset(canvas, asset, matrix)
    return canvas
