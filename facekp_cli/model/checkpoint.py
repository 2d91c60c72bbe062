"""Checkpoint contents and loading. A checkpoint alone is enough to run inference.

Training saves Lightning checkpoints whose LightningModule holds the network as `self.model`
and adds a plain-data `"facekp"` entry (ModelMeta.to_dict()). Everything loads with
`torch.load(weights_only=True)`, so opening a checkpoint never runs code from it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from facekp_cli.errors import ModelFileError
from facekp_cli.frame import Preprocessing
from facekp_cli.keypoints import FLIP_INDEX, NAMES

FACEKP_KEY = "facekp"
META_FORMAT = 1
MODEL_PREFIX = "model."


@dataclass(frozen=True)
class ModelMeta:
    """What a model needs beside its weights; plain data so it survives weights_only loading."""

    preprocessing: Preprocessing
    width: int = 64
    head: str = "regression"  # model.resnet.HEADS
    flip_test: bool = False  # average with the mirrored image at inference (inside the network)
    keypoint_names: tuple[str, ...] = NAMES
    flip_index: tuple[int, ...] = FLIP_INDEX
    settings: dict[str, Any] = field(default_factory=dict)
    facekp_version: str = ""
    git_commit: str | None = None
    data_hash: str | None = None
    data_fingerprint: str | None = None  # provenance.split_fingerprint of the training split
    mlflow_run_id: str | None = None
    epoch: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    # Training-set mean layout, (14, 2) fractions of width/height: the eval baseline, and the
    # crop geometry that `infer --detect` reproduces around a detected face.
    mean_shape: list[list[float]] | None = None
    format: int = META_FORMAT
    # How a shipped model was built (scripts/build_default_model.py): recipe, generator version,
    # the synthetic set's DVC md5. Empty for models `facekp train` makes.
    build_info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["preprocessing"] = self.preprocessing.to_dict()
        data["keypoint_names"], data["flip_index"] = list(self.keypoint_names), list(self.flip_index)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMeta:
        data = dict(data)
        data["preprocessing"] = Preprocessing.from_dict(data["preprocessing"])
        data["keypoint_names"] = tuple(data["keypoint_names"])
        data["flip_index"] = tuple(data["flip_index"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # facekp_cli.model.resnet.ResNet18, in eval mode
    meta: ModelMeta
    path: Path


def build_network(meta: ModelMeta, dropout: float = 0.0):
    from facekp_cli.model.resnet import ResNet18

    return ResNet18(
        meta.preprocessing.in_channels,
        len(meta.keypoint_names),
        meta.width,
        dropout,
        head=meta.head,
        flip_index=tuple(meta.flip_index) if meta.flip_test else None,
    )


def read_checkpoint_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """torch.load with weights_only=True; every failure is a ModelFileError naming the file."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the error below says it all
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelFileError(_describe_unpickling_error(path, str(exc))) from exc
    except Exception as exc:  # garbage bytes raise IndexError, struct.error, ... from the unpickler
        raise ModelFileError(f"{path}: not a readable checkpoint ({_first_line(str(exc))})") from exc
    if not isinstance(checkpoint, dict) or FACEKP_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise ModelFileError(f"{path}: not a facekp checkpoint (no '{FACEKP_KEY}' metadata)")
    return checkpoint


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "unknown error")


def _describe_unpickling_error(path: Path, text: str) -> str:
    """torch's weights_only refusal is a page of advice; keep the one fact that matters, in one line."""
    _, marker, after = text.partition("WeightsUnpickler error:")
    detail = _first_line(after) if marker else ""
    _, blocked, rest = text.partition("unsupported GLOBAL ")  # torch's wording for os, posix, subprocess...
    if detail.startswith("Unsupported global") or blocked:
        if blocked:
            name = rest.split()[0] if rest.split() else "?"
        else:
            name = detail.split("GLOBAL", 1)[1].split(" was not", 1)[0].strip() if "GLOBAL" in detail else "?"
        return (
            f"{path}: refused to load: it asks to import '{name}', and facekp never runs code from a "
            f"checkpoint (only plain tensors and data load)"
        )
    return f"{path}: not a readable checkpoint ({detail or _first_line(text)})"


# What only `--resume` needs; the stable best.ckpt leaves it out (a third of the size at width 64).
# With EMA, "state_dict" holds the averaged weights and these two the raw ones, for --resume only.
TRAINING_STATE_KEYS = (
    "optimizer_states",
    "lr_schedulers",
    "loops",
    "callbacks",
    "current_model_state",
    "averaging_state",
)


def strip_training_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint without optimizer, scheduler and loop state: weights and metadata only."""
    return {key: value for key, value in checkpoint.items() if key not in TRAINING_STATE_KEYS}


def is_resumable(checkpoint: dict[str, Any]) -> bool:
    return "optimizer_states" in checkpoint and "loops" in checkpoint


def load_checkpoint(path: str | os.PathLike[str]) -> LoadedModel:
    checkpoint = read_checkpoint_dict(path)
    # The file is untrusted data: any field may have any type, so every step names the file.
    try:
        meta = ModelMeta.from_dict(checkpoint[FACEKP_KEY])
        newer = int(meta.format) > META_FORMAT
        model = None if newer else build_network(meta)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise ModelFileError(
            f"{path}: facekp metadata is incomplete or corrupt ({_first_line(repr(exc))})"
        ) from exc
    if newer:
        raise ModelFileError(
            f"{path}: made by a newer facekp (metadata format {meta.format}); upgrade facekp"
        )
    try:
        state = {
            k[len(MODEL_PREFIX) :]: v
            for k, v in checkpoint["state_dict"].items()
            if isinstance(k, str) and k.startswith(MODEL_PREFIX)
        }
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(
            f"{path}: weights do not fit the facekp ResNet18 ({_first_line(str(exc))})"
        ) from exc
    model.eval()
    return LoadedModel(model, meta, Path(path))
