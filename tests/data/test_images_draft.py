"""JPEG draft decoding for inference: a large photo decoded at 1/2, 1/4 or 1/8 scale must give the
network the same frame as a full decode, so points map back to the original pixels exactly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facekp_cli.data.images import decode_image, decode_image_for_input, displayed_size
from facekp_cli.errors import DataError, ImageDecodeError
from facekp_cli.frame import resize_to_input

INPUT = 96
# Blobs near the far corners move most when a scale or a padded edge is got wrong: with 1203 px
# decoded at 1/8 (151 px, covering 1208), treating the padded frame as the image would move a blob
# at x = 1100 by 4.6 px.
BLOBS = ((150.0, 120.0), (1100.0, 830.0), (620.0, 460.0))


def _photo(width: int, height: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    image = np.full((height, width), 40.0, np.float32)
    for bx, by in BLOBS:
        image += 200.0 * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * 22.0**2))
    grey = np.clip(image, 0, 255).astype(np.uint8)
    return np.stack([grey, grey // 2 + 60, grey], axis=2)


def _save(path, pixels: np.ndarray, orientation: int = 1) -> None:
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    image.save(path, quality=95, exif=exif.tobytes())


def _blob_centres(network_image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Intensity-weighted centre of each blob, found near where it should be, in original pixels."""
    grey = network_image[..., 0].astype(np.float64)
    grey = np.clip(grey - np.percentile(grey, 60), 0, None)
    size = grey.shape[0]
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    centres = []
    for bx, by in BLOBS:
        near = (np.abs(xx - bx * size / width) < 8) & (np.abs(yy - by * size / height) < 8)
        weights = grey * near
        centres.append((
            (weights * xx).sum() / weights.sum() * width / size,
            (weights * yy).sum() / weights.sum() * height / size,
        ))  # fmt: skip
    return np.array(centres)


def test_a_large_jpeg_is_drafted_with_its_true_size_and_exact_frame(tmp_path):
    width, height = 1203, 905  # not divisible by 8: decoded at 1/8 the last column is padding
    path = tmp_path / "big.jpg"
    _save(path, _photo(width, height))
    drafted = decode_image_for_input(path, INPUT)
    assert drafted.reduced and drafted.pixels.shape == (INPUT, INPUT, 3)
    assert (drafted.width, drafted.height) == (width, height)

    full = resize_to_input(decode_image(path), INPUT)
    truth = np.array(BLOBS)
    full_centres = _blob_centres(full, width, height)
    draft_centres = _blob_centres(drafted.pixels, width, height)
    assert np.abs(draft_centres - full_centres).max() < 1.0  # original pixels
    assert np.abs(draft_centres - truth).max() < 1.5
    # The pixels themselves: the DCT scaling averages blocks much as the area resize does.
    assert np.abs(drafted.pixels.astype(int) - full.astype(int)).mean() < 2.0


@pytest.mark.parametrize("orientation", [2, 3, 6, 8])
def test_exif_orientation_is_applied_to_drafted_images_as_to_full_ones(tmp_path, orientation):
    width, height = 1203, 905
    path = tmp_path / "rotated.jpg"
    _save(path, _photo(width, height), orientation)
    full_image = decode_image(path)
    shown_height, shown_width = full_image.shape[:2]
    assert (shown_width, shown_height) == ((height, width) if orientation in (6, 8) else (width, height))

    drafted = decode_image_for_input(path, INPUT)
    assert drafted.reduced and (drafted.width, drafted.height) == (shown_width, shown_height)
    full = resize_to_input(full_image, INPUT)
    assert np.abs(drafted.pixels.astype(int) - full.astype(int)).mean() < 2.0
    # Compare where the brightest network pixel lies: a wrong transposition moves it far.
    assert np.unravel_index(drafted.pixels[..., 0].argmax(), (INPUT, INPUT)) == pytest.approx(
        np.unravel_index(full[..., 0].argmax(), (INPUT, INPUT)), abs=1
    )


def test_small_images_and_other_formats_are_decoded_in_full(tmp_path):
    small = tmp_path / "small.jpg"
    _save(small, _photo(1203, 905)[:150, :170])  # shorter side < 2 x input: no draft
    png = tmp_path / "big.png"
    Image.fromarray(_photo(1203, 905)).save(png)  # PNG has no DCT scaling
    for path in (small, png):
        sized = decode_image_for_input(path, INPUT)
        assert not sized.reduced
        assert np.array_equal(sized.pixels, decode_image(path))
        assert (sized.width, sized.height) == sized.pixels.shape[1::-1]


def test_grey_jpegs_are_drafted_to_rgb(tmp_path):
    path = tmp_path / "grey.jpg"
    Image.fromarray(_photo(1000, 800)[..., 0]).save(path, quality=95)
    drafted = decode_image_for_input(path, INPUT)
    assert drafted.reduced and drafted.pixels.shape == (INPUT, INPUT, 3)
    assert (drafted.width, drafted.height) == (1000, 800)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_displayed_size_reads_the_header_and_applies_exif_orientation(tmp_path, orientation):
    path = tmp_path / "photo.jpg"
    _save(path, _photo(64, 40), orientation)
    # the one home of this rule (data/images.py) agrees with a full decode
    assert displayed_size(path) == decode_image(path).shape[1::-1]
    assert displayed_size(path) == ((40, 64) if orientation in (6, 8) else (64, 40))


def test_displayed_size_names_the_file_it_cannot_read(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"broken\.jpg: cannot read image header"):
        displayed_size(broken)
    with pytest.raises(DataError, match=r"missing\.png: image not found"):
        displayed_size(tmp_path / "missing.png")


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("size", [(203, 151), (1203, 905)])
@pytest.mark.parametrize("grey", [False, True])
def test_opencv_and_pillow_decode_the_same_pixels(tmp_path, monkeypatch, orientation, size, grey):
    """JPEGs decode through OpenCV (faster); Pillow is the reference: the same array for every EXIF
    orientation, grey or colour, in full and at the draft scales."""
    from PIL import ImageOps

    from facekp_cli.data import images

    pixels = _photo(*size)
    path = tmp_path / "photo.jpg"
    _save(path, pixels[..., 0] if grey else pixels, orientation)
    with Image.open(path) as image:
        reference = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    full = decode_image(path)
    assert full.shape == reference.shape and np.array_equal(full, reference)
    fast = decode_image_for_input(path, INPUT)
    monkeypatch.setattr(images, "_decode_jpeg_with_opencv", lambda *args: None)
    slow = decode_image_for_input(path, INPUT)
    assert (fast.width, fast.height) == (slow.width, slow.height)
    assert fast.reduced == slow.reduced == (min(size) >= 4 * INPUT)
    assert np.array_equal(fast.pixels, slow.pixels)


def test_a_truncated_jpeg_is_still_refused_with_pillows_words(tmp_path):
    path = tmp_path / "cut.jpg"
    _save(path, _photo(400, 300))
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ImageDecodeError, match=r"cut\.jpg"):
        decode_image(path)
