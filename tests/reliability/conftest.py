"""Helpers shared by the reliability tests: a tiny real checkpoint and a face-sized image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A real, loadable facekp checkpoint (ResNet18 width 8, 32 px input, untrained weights)."""
    import torch

    from facekp_cli.model.checkpoint import FACEKP_KEY, ModelMeta, build_network
    from facekp_cli.predict.preprocess import Preprocessing

    meta = ModelMeta(Preprocessing.for_channels(32, 3), width=8)
    state = {f"model.{k}": v for k, v in build_network(meta).state_dict().items()}
    path = tmp_path_factory.mktemp("model") / "tiny.ckpt"
    torch.save({"state_dict": state, FACEKP_KEY: meta.to_dict()}, path)
    return path


@pytest.fixture()
def face_png(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "face.png"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(path)
    return path
