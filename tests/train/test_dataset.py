"""Dataset and data module: targets in the network frame, masks, original sizes, a seeded split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facekp_cli.data.datamodule import KeypointDataModule, split_indices
from facekp_cli.data.format import read_split, write_gt_csv
from facekp_cli.data.images import decode_image, decode_image_for_input
from facekp_cli.errors import DataError
from facekp_cli.frame import normalised_to_points, prepare_image


@pytest.mark.parametrize("cache", [True, False])
def test_validation_items_match_the_inference_path(tiny_settings, cache):
    settings = tiny_settings(**{"train.cache_images": cache})
    datamodule = KeypointDataModule(settings)
    dataset = datamodule.dataset("val")
    split = read_split(settings.data.root / "train")
    for position in range(len(dataset)):
        item = dataset[position]
        row = int(item["index"])
        # The pixels infer/eval feed the network: these 160 px images are 5x the 32 px input, so
        # infer decodes them at reduced scale (issue 17: validation decoded them in full before).
        sized = decode_image_for_input(split.image_path(row), datamodule.prep.input_size)
        np.testing.assert_array_equal(item["image"].numpy(), prepare_image(sized.pixels, datamodule.prep))
        image = decode_image(split.image_path(row))
        assert item["size"].tolist() == [image.shape[1], image.shape[0]] == [sized.width, sized.height]
        gt = split.keypoints[row]
        assert item["mask"].numpy().tolist() == np.isfinite(gt).all(axis=1).tolist()
        back = normalised_to_points(item["target"].numpy(), image.shape[1], image.shape[0])
        labelled = item["mask"].numpy()
        np.testing.assert_allclose(back[labelled], gt[labelled], atol=1e-3)
        np.testing.assert_array_equal(item["points"].numpy(), gt)


def test_training_items_are_augmented_and_keep_the_frame(tiny_settings):
    # Per-sample augmentation in the Dataset (the batched backend augments in the module:
    # tests/train/test_batch_augment.py).
    settings = tiny_settings(**{"augment.backend": "albumentations"})
    datamodule = KeypointDataModule(settings)
    train = datamodule.dataset("train")
    np.random.seed(0)
    first, second = train[0], train[0]
    assert first["image"].shape == (3, 32, 32) and first["image"].dtype == torch.float32
    assert not torch.equal(first["image"], second["image"])  # a fresh augmentation each time
    assert first["target"].shape == (14, 2) and torch.isfinite(first["target"]).all()
    assert (first["target"][~first["mask"]] == 0).all()


def test_unlabelled_points_are_masked(tmp_path, tiny_dataset, tiny_settings):
    split = read_split(tiny_dataset / "train")
    root = tmp_path / "partial"
    (root / "train").mkdir(parents=True)
    (root / "train" / "images").symlink_to(split.images_dir.resolve())
    keypoints = split.keypoints.copy()
    keypoints[:, 10] = np.nan  # nobody labelled the nose
    write_gt_csv(root / "train" / "gt.csv", split.filenames, keypoints)
    datamodule = KeypointDataModule(tiny_settings(**{"data.root": root}))
    for which in ("train", "val"):
        item = datamodule.dataset(which)[0]
        assert not item["mask"][10] and item["mask"].sum() == 13
    assert np.isnan(datamodule.mean_shape[10]).all() and np.isfinite(datamodule.mean_shape[:10]).all()


def test_split_is_seeded_disjoint_and_complete():
    train, val = split_indices(100, 0.1, seed=0)
    again_train, again_val = split_indices(100, 0.1, seed=0)
    other_train, _ = split_indices(100, 0.1, seed=1)
    assert len(val) == 10 and len(train) == 90
    assert set(train) | set(val) == set(range(100)) and not set(train) & set(val)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(val, again_val)
    assert not np.array_equal(train, other_train)
    assert [len(v) for _, v in [split_indices(2, 0.5, 0), split_indices(3, 0.01, 0)]] == [1, 1]


def test_mean_shape_is_a_layout_in_fractions(tiny_settings):
    datamodule = KeypointDataModule(tiny_settings())
    shape = datamodule.mean_shape
    assert shape.shape == (14, 2) and ((shape > 0) & (shape < 1)).all()
    assert shape[4, 0] < shape[9, 0]  # left eye outer corner left of the right one


def test_empty_dataset_folder_is_a_data_error(tmp_path, tiny_settings):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="facekp data pull"):
        KeypointDataModule(tiny_settings(**{"data.root": tmp_path / "empty"})).setup()
