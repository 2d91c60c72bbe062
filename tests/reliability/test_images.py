"""Images that are broken, hostile or unusual (facekp_cli.data.images.decode_image).

Broken files raise ImageDecodeError (exit code 3) naming the file; unusual but valid ones decode
to (H, W, 3) uint8 RGB as displayed, since labels refer to the displayed image.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facekp_cli.data.images import MAX_PIXELS, MIN_SIDE, decode_image
from facekp_cli.errors import ExitCode, ImageDecodeError

RNG = np.random.default_rng(0)
PICTURE = (RNG.random((40, 50, 3)) * 255).astype(np.uint8)


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG signature and header for a huge image, with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def decode_error(path: Path) -> str:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(path)
    assert info.value.exit_code == ExitCode.DATA
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


@pytest.fixture()
def jpeg_bytes(tmp_path) -> bytes:
    Image.fromarray(PICTURE).save(tmp_path / "ok.jpg", quality=90)
    return (tmp_path / "ok.jpg").read_bytes()


def test_empty_file(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    assert "not an image" in decode_error(tmp_path / "a.jpg")


def test_text_with_an_image_extension(tmp_path):
    (tmp_path / "a.png").write_text("name,x1,y1\n")
    assert "not an image" in decode_error(tmp_path / "a.png")


def test_truncated_jpeg(tmp_path, jpeg_bytes):
    (tmp_path / "t.jpg").write_bytes(jpeg_bytes[: len(jpeg_bytes) // 3])
    assert "cannot decode" in decode_error(tmp_path / "t.jpg")


def test_truncated_png(tmp_path):
    Image.fromarray(PICTURE).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    assert "cannot decode" in decode_error(tmp_path / "t.png")


def test_flipped_bytes_in_the_middle(tmp_path, jpeg_bytes):
    """Corruption that keeps the header: decoding either fails cleanly or yields the right size."""
    data = bytearray(jpeg_bytes)
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    (tmp_path / "c.jpg").write_bytes(bytes(data))
    try:
        assert decode_image(tmp_path / "c.jpg").shape == PICTURE.shape
    except ImageDecodeError as exc:
        assert "c.jpg" in str(exc)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(100_000, 100_000))
    assert bomb.stat().st_size < 200
    assert "too large" in decode_error(bomb)


def test_image_over_our_limit_but_under_pillows_is_refused_quietly(tmp_path):
    side = int((MAX_PIXELS * 2) ** 0.5)  # above MAX_PIXELS, above Pillow's warning level
    big = tmp_path / "big.png"
    big.write_bytes(png_claiming(side, side))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not reach the user
        message = decode_error(big)
    assert f"{side}x{side}" in message and "too large" in message


def test_tiny_image(tmp_path):
    Image.fromarray(PICTURE[: MIN_SIDE - 1, :20]).save(tmp_path / "tiny.png")
    assert "too small" in decode_error(tmp_path / "tiny.png")
    Image.fromarray(PICTURE[:MIN_SIDE, :MIN_SIDE]).save(tmp_path / "smallest.png")
    assert decode_image(tmp_path / "smallest.png").shape == (MIN_SIDE, MIN_SIDE, 3)


def test_missing_file_and_folder(tmp_path):
    assert "not found" in decode_error(tmp_path / "nope.jpg")
    (tmp_path / "dir.jpg").mkdir()
    assert "directory" in decode_error(tmp_path / "dir.jpg")


def test_sixteen_bit_grey_is_scaled_to_eight_bits(tmp_path):
    values = np.array([[0, 32768, 65535] * 4] * 12, dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    out = decode_image(tmp_path / "deep.png")
    assert out.shape == (12, 12, 3) and out.dtype == np.uint8
    assert out[0, :3, 0].tolist() == [0, 128, 255]
    assert (out[..., 0] == out[..., 2]).all()


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (16, 12), (0, 0, 0, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    out = decode_image(tmp_path / "cmyk.jpg")
    assert out.shape == (12, 16, 3) and out.min() > 240  # no ink = white


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_png_keeps_its_colours(tmp_path, transparent):
    image = Image.new("P", (10, 10))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (0, 0, 5, 10))
    kwargs = {"transparency": 0} if transparent else {}
    image.save(tmp_path / "p.png", **kwargs)
    out = decode_image(tmp_path / "p.png")
    assert out[0, 0].tolist() == [0, 0, 255] and out[0, 9].tolist() == [255, 0, 0]


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "1", "F"])
def test_other_modes_decode_to_rgb(tmp_path, mode):
    suffix = ".tif" if mode == "F" else ".png"  # 32-bit float images live in TIFF files
    Image.fromarray(PICTURE).convert(mode).save(tmp_path / f"m{suffix}")
    out = decode_image(tmp_path / f"m{suffix}")
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8


@pytest.mark.parametrize(
    ("orientation", "expected_xy"),
    [
        (1, (5, 2)),  # as stored
        (3, (30 - 1 - 5, 20 - 1 - 2)),  # rotated 180
        (6, (20 - 1 - 2, 5)),  # displayed turned 90 degrees clockwise
        (8, (2, 30 - 1 - 5)),  # displayed turned 90 degrees counter-clockwise
    ],
)
def test_exif_orientation_is_applied_so_labels_match_the_display(tmp_path, orientation, expected_xy):
    stored = np.zeros((20, 30, 3), np.uint8)  # 30 wide, 20 high
    stored[2, 5] = 255  # a marker at x=5, y=2 as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "r.png", exif=exif.tobytes())
    out = decode_image(tmp_path / "r.png")
    assert out.shape == ((20, 30, 3) if orientation in (1, 3) else (30, 20, 3))
    y, x = np.unravel_index(out[..., 0].argmax(), out.shape[:2])
    assert (x, y) == expected_xy


def test_broken_exif_does_not_make_a_readable_image_unreadable(tmp_path, jpeg_bytes):
    # An APP1 'Exif' segment full of garbage right after the SOI marker.
    junk = b"Exif\x00\x00" + b"\xff\x13" * 40
    data = jpeg_bytes[:2] + b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk + jpeg_bytes[2:]
    (tmp_path / "e.jpg").write_bytes(data)
    assert decode_image(tmp_path / "e.jpg").shape == PICTURE.shape
