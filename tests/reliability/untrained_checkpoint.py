"""A real, loadable facekp checkpoint with untrained weights (for tests that need a model file)."""

from __future__ import annotations

from pathlib import Path


def write_untrained_checkpoint(path: Path, input_size: int, width: int) -> Path:
    import torch

    from facekp_cli.frame import Preprocessing
    from facekp_cli.model.checkpoint import FACEKP_KEY, ModelMeta, build_network

    meta = ModelMeta(Preprocessing.for_channels(input_size, 3), width=width)
    state = {f"model.{k}": v for k, v in build_network(meta).state_dict().items()}
    torch.save({"state_dict": state, FACEKP_KEY: meta.to_dict()}, path)
    return path
