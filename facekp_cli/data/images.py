"""Image decoding shared by training, evaluation and inference: one path, one result.

Every supported file becomes an RGB uint8 array as displayed (EXIF orientation applied), since
labels refer to the displayed image.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facekp_cli.errors import DataError, ImageDecodeError

MAX_PIXELS = 50_000_000  # larger files are refused before decoding (decompression bombs)
MIN_SIDE = 8

# A JPEG whose shorter side is at least this many network inputs is decoded at 1/2, 1/4 or 1/8
# scale (libjpeg's DCT scaling): most of a large photo's decoding time goes into pixels that the
# resize to the network input averages away. At 4x the draft still leaves at least twice the
# input's pixels to average, so predictions match the full decode that training and eval use (at
# 2x, a 160 px crop for a 64 px input moved MSE100 on real faces by 1 %).
DRAFT_MIN_RATIO = 4


@dataclass(frozen=True)
class SizedImage:
    """Pixels of the whole displayed image, possibly at a reduced resolution, and its true size.

    `pixels` always covers exactly the frame of the original (0..width, 0..height), stretched when
    reduced, so a point at fraction (u, v) of `pixels` lies at (u * width, v * height) in the original.
    """

    pixels: np.ndarray  # (h, w, 3) uint8 RGB
    width: int  # the original's displayed size (EXIF orientation applied)
    height: int

    @property
    def reduced(self) -> bool:
        return self.pixels.shape[:2] != (self.height, self.width)


def decode_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode a file to an (H, W, 3) uint8 RGB array; raises ImageDecodeError naming the file."""
    return _decode(Path(path), Path(path), None).pixels


def decode_image_bytes(data: bytes, label: str) -> np.ndarray:
    """The same decoding for an image file's bytes held in memory; errors name `label`."""
    import io

    return _decode(io.BytesIO(data), label, None).pixels


def decode_image_for_input(
    path: str | os.PathLike[str], input_size: int, data: bytes | None = None
) -> SizedImage:
    """Decode for a network that sees input_size x input_size: a JPEG at least DRAFT_MIN_RATIO
    times larger (shorter side) is decoded at 1/2, 1/4 or 1/8 scale and resampled to exactly
    input_size x input_size over the original frame; anything else is decoded as decode_image does.
    `data`: the file's bytes already in memory (object storage); `path` then only names it."""
    if data is not None:
        import io

        return _decode(io.BytesIO(data), path, input_size)
    return _decode(Path(path), Path(path), input_size)


def _decode(source, path, input_size: int | None) -> SizedImage:
    """`source` is a path or a file object; `path` names it in errors."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    # PIL warns (on stderr, once per run) from 89 M pixels up; MAX_PIXELS below refuses such files.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    try:
        # One open file for the header and, on the OpenCV path, the bytes.
        with _opened(source) as fh, Image.open(fh) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(
                    f"{path}: image too large ({width}x{height} px, limit {MAX_PIXELS:,} pixels)"
                )
            fast = _decode_jpeg_with_opencv(image, fh, input_size)
            if fast is not None:
                array, width, height = fast
            else:
                reduced = input_size is not None and _draft(image, input_size)
                image.load()
                if reduced:
                    orientation = _orientation(image)
                    small = reduced_to_input(image, width, height, input_size, _scale(image))
                    array = _oriented(_to_rgb8(small), orientation)
                    if orientation in (5, 6, 7, 8):
                        width, height = height, width
                else:
                    # A broken EXIF block must not make a readable image unreadable.
                    with contextlib.suppress(Exception):
                        image = ImageOps.exif_transpose(image)
                    width, height = image.size
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
    if min(width, height) < MIN_SIDE:
        raise ImageDecodeError(f"{path}: image too small ({width}x{height} px, minimum {MIN_SIDE} px a side)")
    return SizedImage(np.ascontiguousarray(array), width, height)


def _opened(source):
    """A path opened for reading (closed on exit), or the file object as it is."""
    return open(source, "rb") if isinstance(source, Path) else contextlib.nullcontext(source)


def _decode_jpeg_with_opencv(image, fh, input_size: int | None) -> tuple[np.ndarray, int, int] | None:
    """(pixels, displayed width, height) of a complete RGB or grey JPEG through OpenCV's
    libjpeg-turbo: the same pixels as Pillow's (checked on 2,000 real faces at every draft scale,
    tests/data/test_images_draft.py) in about half the CPU, as it skips Pillow's per-image copies.
    None: let Pillow decode it (other formats and modes, truncated or broken files, whose errors
    Pillow words). `fh`: the open file the header came from."""
    if image.format != "JPEG" or image.mode not in ("RGB", "L"):
        return None
    fh.seek(0)
    data = fh.read()
    if not data.endswith(b"\xff\xd9"):  # truncated (or trailing bytes): Pillow reports or copes
        return None
    import cv2

    width, height = image.size
    scale = 1
    if input_size is not None and min(width, height) >= DRAFT_MIN_RATIO * input_size:
        # Pillow's draft rule: the largest of 8, 4, 2 that keeps both sides >= the input.
        fits = min(width // input_size, height // input_size)
        scale = next(k for k in (8, 4, 2, 1) if fits >= k)
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}
    flag = flags.get(scale, cv2.IMREAD_REDUCED_COLOR_8) | cv2.IMREAD_IGNORE_ORIENTATION
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if bgr is None or bgr.shape[:2] != (-(-height // scale), -(-width // scale)):
        return None
    pixels = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    orientation = _orientation(image)
    if scale > 1:
        from PIL import Image

        pixels = np.asarray(reduced_to_input(Image.fromarray(pixels), width, height, input_size, scale))
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return _oriented(pixels, orientation), width, height


def _oriented(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation applied to an (H, W, C) array: the image upright, as PIL's exif_transpose."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(pixels, -1)
    if orientation == 7:
        return pixels[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(pixels, 1)
    return pixels


def _draft(image, input_size: int) -> bool:
    """Ask libjpeg for a 1/2, 1/4 or 1/8 scale decode when the JPEG is much larger than the input."""
    if image.format != "JPEG" or min(image.size) < DRAFT_MIN_RATIO * input_size:
        return False
    image.draft(None, (input_size, input_size))  # the largest scale that keeps both sides >= input
    return _scale(image) > 1


def _scale(image) -> int:
    config = getattr(image, "decoderconfig", ())
    return int(config[0]) if config else 1


def displayed_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientations 5-8 swap the axes), from the header alone."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = _orientation(image)
    except FileNotFoundError:
        raise DataError(f"{path}: image not found (needed for its size)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image header ({exc})") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _orientation(image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))  # EXIF Orientation
    except Exception:  # a broken EXIF block: shown as stored, as exif_transpose would
        return 1


def reduced_to_input(image, width: int, height: int, input_size: int, scale: int):
    """A draft-decoded JPEG (ceil(width / s) x ceil(height / s) px; its last row and column
    may cover padding beyond the original) -> input_size x input_size over exactly the original
    frame: the box (0, 0, width / s, height / s) in decoded pixels, area-averaged like the full path."""
    from PIL import Image

    box = (0.0, 0.0, width / scale, height / scale)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return image.resize((input_size, input_size), Image.Resampling.BOX, box=box)


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
