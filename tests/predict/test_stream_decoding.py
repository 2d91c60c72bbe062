"""predict_images decodes in threads or processes, large JPEGs in draft mode: the same points either
way, in input order, unreadable files reported, and a large photo's points in its own pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facekp_cli.data.images import decode_image
from facekp_cli.frame import normalised_to_points, prepare_image, resize_to_input
from facekp_cli.predict.backends import checkpoint_predictor
from facekp_cli.predict.decoding import DecodeJob, decode_for_prediction
from facekp_cli.predict.sources import ImageSource
from facekp_cli.predict.stream import choose_decoder, predict_images


@pytest.fixture(scope="module")
def photos(tiny_dataset, tmp_path_factory):
    """Dataset crops, two of them enlarged to large photos (one with an EXIF rotation), one broken file."""
    folder = tmp_path_factory.mktemp("photos")
    crops = sorted((tiny_dataset / "test" / "images").iterdir())[:9]
    sources = []
    for index, crop in enumerate(crops):
        target = folder / f"{index:02d}.jpg"
        with Image.open(crop) as image:
            image = image.convert("RGB")
            exif = Image.Exif()
            if index in (2, 5):
                image = image.resize((1203 if index == 2 else 905, 905 if index == 2 else 1203))
                if index == 5:
                    exif[0x0112] = 6  # shown rotated: the displayed size is 1203 x 905
            image.save(target, quality=92, exif=exif.tobytes())
        sources.append(ImageSource(target, target.name))
    broken = folder / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    sources.insert(4, ImageSource(broken, broken.name))
    return sources


def _run(predictor, sources, **options):
    return list(predict_images(predictor, sources, batch_size=4, **options))


def test_threads_and_processes_give_the_same_points_in_order(facekp_checkpoint, photos):
    predictor = checkpoint_predictor(facekp_checkpoint)
    by_threads = _run(predictor, photos, workers=2, decoder="threads")
    by_processes = _run(predictor, photos, workers=2, decoder="processes")
    inline = _run(predictor, photos, workers=0)
    for results in (by_threads, by_processes, inline):
        assert [r.source.name for r in results] == [s.name for s in photos]
        assert [r.ok for r in results] == [s.name != "broken.jpg" for s in photos]
        assert "broken.jpg" in results[4].error
    for a, b, c in zip(by_threads, by_processes, inline, strict=True):
        if a.ok:
            assert (a.width, a.height) == (b.width, b.height) == (c.width, c.height)
            np.testing.assert_allclose(a.points, b.points, atol=1e-3)
            np.testing.assert_allclose(a.points, c.points, atol=1e-3)


def test_large_photos_come_back_in_their_own_pixels(facekp_checkpoint, photos):
    predictor = checkpoint_predictor(facekp_checkpoint)
    results = _run(predictor, photos, workers=2, decoder="threads")
    full = _run(predictor, photos, workers=2, decoder="threads", draft=False)
    prep = predictor.meta.preprocessing
    for index in (2, 6):  # photos 2 and 5, after the broken file inserted at 4
        drafted, reference = results[index], full[index]
        assert (drafted.width, drafted.height) == (1203, 905)
        image = decode_image(photos[index].path)
        assert image.shape[:2] == (905, 1203)
        manual = normalised_to_points(predictor.predict(prepare_image(image, prep)[None])[0], 1203, 905)
        np.testing.assert_allclose(reference.points, manual, atol=1e-3)
        # Draft decoding changes the pixels a little, never the frame. Judged on the network input
        # itself (a frame off by even one input pixel moves every edge of the face by a full level
        # step), not through the tiny test model, whose points swing with any pixel change.
        job = DecodeJob(prep.input_size)
        draft_input = decode_for_prediction(photos[index], job).inputs[0].astype(np.float64)
        full_input = resize_to_input(image, prep.input_size).astype(np.float64)
        assert np.abs(draft_input - full_input).mean() < 3.0
        shifted = np.abs(np.roll(full_input, 1, axis=1) - full_input)[:, 1:].mean()
        assert np.abs(draft_input - full_input).mean() < shifted / 2
        assert np.abs(drafted.points - manual).max() < 0.05 * 1203  # and the points stay near


def test_auto_uses_processes_only_for_long_runs_without_drawing():
    assert choose_decoder("auto", 8, 10_000, keep_images=False) == "processes"
    assert choose_decoder("auto", 2, 10_000, keep_images=False) == "threads"  # 2 cores: no gain
    assert choose_decoder("auto", 8, 10, keep_images=False) == "threads"
    assert choose_decoder("auto", 8, 10_000, keep_images=True) == "threads"
    assert choose_decoder("threads", 2, 10_000, keep_images=False) == "threads"
    with pytest.raises(ValueError, match="unknown decoder"):
        choose_decoder("gpu", 2, 10, keep_images=False)


@pytest.mark.parametrize("channels", [3, 1])
def test_batched_normalisation_gives_the_same_numbers_as_per_image(channels):
    from facekp_cli.frame import Preprocessing, to_network_input
    from facekp_cli.predict.decoding import batch_to_network_input

    prep = Preprocessing.for_channels(24, channels)
    images = list(np.random.default_rng(0).integers(0, 256, (5, 24, 24, 3), dtype=np.uint8))
    batched = batch_to_network_input(images, prep)
    assert batched.shape == (5, channels, 24, 24) and batched.dtype == np.float32
    assert np.array_equal(batched, np.stack([to_network_input(x, prep) for x in images]))
