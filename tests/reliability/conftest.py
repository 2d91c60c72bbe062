"""Helpers shared by the reliability tests: a tiny real checkpoint and a face-sized image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from untrained_checkpoint import write_untrained_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A real, loadable facekp checkpoint (ResNet18 width 8, 32 px input, untrained weights)."""
    return write_untrained_checkpoint(tmp_path_factory.mktemp("model") / "tiny.ckpt", input_size=32, width=8)


@pytest.fixture()
def face_png(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "face.png"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(path)
    return path
