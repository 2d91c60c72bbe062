"""Fixtures for inference, evaluation and export: a small facekp checkpoint made without training code.

The checkpoint has exactly the layout training writes ({"state_dict": {"model.<k>": ...},
"facekp": ModelMeta.to_dict()}) and is fitted for a few plain torch steps on the tiny dataset,
so its predictions are face-shaped rather than degenerate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

INPUT_SIZE = 40
WIDTH = 8
FIT_STEPS = 30


def _load_split(split_dir: Path, prep):
    from facekp_cli.data.format import read_split
    from facekp_cli.data.images import decode_image
    from facekp_cli.frame import points_to_normalised, prepare_image

    split = read_split(split_dir)
    inputs, targets, sizes = [], [], []
    for index in range(len(split)):
        image = decode_image(split.image_path(index))
        height, width = image.shape[:2]
        inputs.append(prepare_image(image, prep))
        targets.append(points_to_normalised(split.keypoints[index], width, height))
        sizes.append((width, height))
    return np.stack(inputs), np.stack(targets), np.asarray(sizes, np.float64), split


def build_checkpoint(dataset_root: Path, out: Path, steps: int = FIT_STEPS, seed: int = 0) -> Path:
    import torch

    from facekp_cli import __version__
    from facekp_cli.frame import Preprocessing
    from facekp_cli.metrics import mean_shape
    from facekp_cli.model.checkpoint import ModelMeta
    from facekp_cli.model.resnet import ResNet18

    torch.manual_seed(seed)
    prep = Preprocessing.for_channels(INPUT_SIZE, 3)
    inputs, targets, sizes, split = _load_split(dataset_root / "train", prep)
    layout = mean_shape(split.keypoints, sizes)
    model = ResNet18(3, 14, WIDTH)
    with torch.no_grad():  # start from the mean shape, so a few steps can only improve on it
        model.head.bias.copy_(torch.from_numpy(2.0 * layout.reshape(-1) - 1.0).float())
    x, y = torch.from_numpy(inputs), torch.from_numpy(np.nan_to_num(targets))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.l1_loss(model(x), y)
        loss.backward()
        optimizer.step()
    model.eval()
    meta = ModelMeta(
        preprocessing=prep,
        width=WIDTH,
        facekp_version=__version__,
        data_hash="0123456789abcdef0123456789abcdef.dir",
        mean_shape=layout.tolist(),
        epoch=steps,
    )
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "facekp": meta.to_dict()}, out)
    return out


@pytest.fixture(scope="session")
def facekp_checkpoint(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fitted width-8, 40-px facekp checkpoint (best.ckpt layout) for the tiny dataset."""
    return build_checkpoint(tiny_dataset, tmp_path_factory.mktemp("ckpt") / "best.ckpt")
