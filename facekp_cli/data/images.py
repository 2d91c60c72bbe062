"""Image decoding shared by training, evaluation and inference: one path, one result.

Every supported file becomes an RGB uint8 array as displayed (EXIF orientation applied), since
labels refer to the displayed image.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import numpy as np

from facekp_cli.errors import ImageDecodeError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_PIXELS = 50_000_000  # larger files are refused before decoding (decompression bombs)
MIN_SIDE = 8


def is_image_file(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def decode_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode a file to an (H, W, 3) uint8 RGB array; raises ImageDecodeError naming the file."""
    return _decode(Path(path), Path(path))


def decode_image_bytes(data: bytes, label: str) -> np.ndarray:
    """The same decoding for an image file's bytes held in memory; errors name `label`."""
    import io

    return _decode(io.BytesIO(data), label)


def _decode(source, path) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    # PIL warns (on stderr, once per run) from 89 M pixels up; MAX_PIXELS below refuses such files.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    try:
        with Image.open(source) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(
                    f"{path}: image too large ({width}x{height} px, limit {MAX_PIXELS:,} pixels)"
                )
            image.load()
            # A broken EXIF block must not make a readable image unreadable.
            with contextlib.suppress(Exception):
                image = ImageOps.exif_transpose(image)
            array = _to_rgb8(image)
    except ImageDecodeError:
        raise
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"{path}: file not found") from exc
    except IsADirectoryError as exc:
        raise ImageDecodeError(f"{path}: is a directory, not an image") from exc
    except Image.DecompressionBombError as exc:
        claimed = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageDecodeError(
            f"{path}: image too large (its header claims over {claimed:,} pixels, limit {MAX_PIXELS:,})"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(f"{path}: not an image file (unrecognised format)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"{path}: cannot decode image ({exc})") from exc
    if min(array.shape[:2]) < MIN_SIDE:
        raise ImageDecodeError(
            f"{path}: image too small ({array.shape[1]}x{array.shape[0]} px, minimum {MIN_SIDE} px a side)"
        )
    return array


def _to_rgb8(image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = (
            1.0
            if mode == "F" and values.max(initial=0) <= 1.0
            else 65535.0
            if values.max(initial=0) > 255
            else 255.0
        )
        gray = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode in ("P", "PA") and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
