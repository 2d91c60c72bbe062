"""Helpers shared by the training tests (a module of its own: `conftest` names clash across folders)."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np

# Every augmentation step off: tests switch on the one they look at (both backends share the keys).
AUGMENT_OFF = dict(
    hflip_p=0.0,
    affine_p=0.0,
    perspective_p=0.0,
    dropout_p=0.0,
    color_p=0.0,
    blur_p=0.0,
    noise_p=0.0,
    gray_p=0.0,
    jpeg_p=0.0,
)


def tiny_overrides(root: Path, work: Path, **extra) -> dict:
    """A 32 px, width-8 network on the tiny set: about a second per epoch on 2 cores."""
    values = {
        "data.root": root,
        "data.num_workers": 0,
        "model.input_size": 32,
        "model.width": 8,
        "train.epochs": 2,
        "train.batch_size": 8,
        "train.out_dir": work / "runs",
        "train.best_path": work / "best.ckpt",
        "train.accelerator": "cpu",
        "train.devices": "1",
        "tracking.uri": f"sqlite:///{work / 'mlflow.db'}",
    }
    values.update(extra)
    return values


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def augment_example(
    image: np.ndarray, keypoints: np.ndarray, settings, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented copy of an example (builds the pipeline; the Dataset reuses one instead)."""
    from facekp_cli.data.augment import apply_augmentation, build_pipeline

    if not settings.augment.enabled:
        return image, np.asarray(keypoints, np.float32).copy()
    return apply_augmentation(build_pipeline(settings.augment), image, keypoints, settings.augment, seed)
