"""Model metadata stored inside exported files, so an exported model alone is enough to infer.

ONNX keeps it in `metadata_props` (string key/value pairs), TorchScript in an extra file
`facekp.json`. Both hold the same ModelMeta dictionary the checkpoint carries, plus a few flat
keys (keypoint names, flip map, input size...) that other tools can read without facekp.
"""

from __future__ import annotations

import json
from typing import Any

from facekp_cli import __version__
from facekp_cli.errors import ModelFileError
from facekp_cli.model.checkpoint import META_FORMAT, ModelMeta

META_KEY = "facekp.meta"  # the full ModelMeta as JSON; the flat keys below are for humans and tools
TORCHSCRIPT_EXTRA_FILE = "facekp.json"
EXPORT_FORMAT_VERSION = 1


def meta_to_props(meta: ModelMeta, source_sha256: str | None = None) -> dict[str, str]:
    """Flat string properties describing the model (ONNX metadata_props, TorchScript extra file)."""
    prep = meta.preprocessing
    meta_dict = meta.to_dict()
    meta_dict["settings"] = {}  # resolved training settings stay in the checkpoint and MLflow
    props = {
        META_KEY: json.dumps(meta_dict, sort_keys=True),
        "facekp.export_format": str(EXPORT_FORMAT_VERSION),
        "facekp.exported_by": __version__,
        "facekp.facekp_version": meta.facekp_version or "",
        "facekp.data_hash": meta.data_hash or "",
        "facekp.keypoint_names": ",".join(meta.keypoint_names),
        "facekp.flip_index": ",".join(str(i) for i in meta.flip_index),
        "facekp.input_size": str(prep.input_size),
        "facekp.in_channels": str(prep.in_channels),
        "facekp.mean": ",".join(f"{v:g}" for v in prep.mean),
        "facekp.std": ",".join(f"{v:g}" for v in prep.std),
        "facekp.output": "(batch, keypoints, 2) as (2x/W - 1, 2y/H - 1) of the input image",
    }
    if source_sha256:
        props["facekp.source_checkpoint_sha256"] = source_sha256
    return props


def meta_from_props(props: dict[str, str], source: str) -> ModelMeta:
    """Read ModelMeta back; a file without facekp metadata is a ModelFileError naming it."""
    raw = props.get(META_KEY)
    if raw is None:
        raise ModelFileError(f"{source}: no facekp metadata ('{META_KEY}'); export it with 'facekp export'")
    try:
        data: dict[str, Any] = json.loads(raw)
        meta = ModelMeta.from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{source}: facekp metadata is corrupt ({exc})") from exc
    if meta.format > META_FORMAT or int(props.get("facekp.export_format", "1")) > EXPORT_FORMAT_VERSION:
        raise ModelFileError(f"{source}: exported by a newer facekp; upgrade facekp")
    return meta
