"""Batched predictors: a checkpoint (torch), an ONNX file (onnxruntime) or a TorchScript file.

Every backend takes the same network input (facekp_cli.frame.prepare_image, stacked
to (B, C, S, S) float32) and returns (B, K, 2) normalised points, so infer, eval and export
verification share one preprocessing path whatever runs the model.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facekp_cli import __version__
from facekp_cli.errors import ModelFileError, UsageError
from facekp_cli.model.checkpoint import ModelMeta, load_checkpoint
from facekp_cli.model.metadata import TORCHSCRIPT_EXTRA_FILE, meta_from_props
from facekp_cli.provenance import sha256_file

# OpenMP threads that spin while waiting take the cores other processes, and our decoding
# threads, need: on a shared 2-core machine that halved `facekp infer` (43 vs 100 images/s),
# while on an idle one it changes nothing. Only effective before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")


@dataclass
class Predictor:
    """One loaded model: `predict(batch)` maps (B, C, S, S) float32 to (B, K, 2) normalised points."""

    kind: str  # "checkpoint", "onnx" or "torchscript"
    path: Path
    meta: ModelMeta
    sha256: str
    _run: Any = field(repr=False, default=None)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, len(self.meta.keypoint_names), 2), np.float32)
        return np.asarray(self._run(np.ascontiguousarray(batch, dtype=np.float32)), np.float32)

    def provenance(self) -> dict[str, Any]:
        """Where predictions came from, as written into every predictions file and report."""
        return {
            "kind": self.kind,
            "path": str(self.path),
            "sha256": self.sha256,
            "model_facekp_version": self.meta.facekp_version or None,
            "data_hash": self.meta.data_hash,
            "git_commit": self.meta.git_commit,
            "mlflow_run_id": self.meta.mlflow_run_id,
            "facekp_version": __version__,
        }


def torch_device(name: str):
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"unknown device '{name}' (use cpu, cuda or cuda:N)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device '{name}' requested but CUDA is not available here; use --device cpu")
    return device


def _torch_runner(module, device_name: str):
    import torch

    device = torch_device(device_name)
    module = module.to(device).eval()

    if device.type != "cuda":

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(batch).to(device)).float().cpu().numpy()

        return run

    # On a GPU the batch goes through one reused page-locked buffer: a copy from pinned memory runs
    # as DMA without the driver staging it first, and non_blocking lets it overlap the launch queue.
    pinned: list = []

    def run_cuda(batch: np.ndarray) -> np.ndarray:
        if not pinned or pinned[0].shape[0] < len(batch) or pinned[0].shape[1:] != batch.shape[1:]:
            pinned[:] = [torch.empty(batch.shape, dtype=torch.float32).pin_memory()]
        staged = pinned[0][: len(batch)]
        staged.copy_(torch.from_numpy(batch))
        with torch.inference_mode():
            out = module(staged.to(device, non_blocking=True))
            return out.float().cpu().numpy()  # .cpu() waits for the GPU, so the buffer is free again

    return run_cuda


def checkpoint_predictor(path: str | os.PathLike[str], device: str = "cpu") -> Predictor:
    loaded = load_checkpoint(path)
    run = _torch_runner(loaded.model, device)
    return Predictor("checkpoint", Path(path), loaded.meta, sha256_file(path), run)


def onnx_predictor(path: str | os.PathLike[str], threads: int = 0) -> Predictor:
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # onnxruntime's own warnings are not the user's problem
    # Idle onnxruntime threads spin by default, taking the cores the decoding threads need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
        raise ModelFileError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0]})") from exc
    meta = meta_from_props(dict(session.get_modelmeta().custom_metadata_map), str(path))
    input_name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: batch})[0]

    return Predictor("onnx", path, meta, sha256_file(path), run)


def torchscript_predictor(path: str | os.PathLike[str], device: str = "cpu") -> Predictor:
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.13
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # torch.jit raises RuntimeError and friends for non-TorchScript files
        raise ModelFileError(
            f"{path}: not a readable TorchScript model ({str(exc).splitlines()[0]})"
        ) from exc
    try:
        props = json.loads(extra[TORCHSCRIPT_EXTRA_FILE] or "{}")
    except ValueError as exc:
        raise ModelFileError(f"{path}: facekp metadata is corrupt ({exc})") from exc
    meta = meta_from_props(props, str(path))
    return Predictor("torchscript", path, meta, sha256_file(path), _torch_runner(module, device))


def open_predictor(
    ckpt: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] | None = None,
    device: str = "cpu",
) -> Predictor:
    """A checkpoint (`--ckpt`) or an exported model (`--model`: .onnx, or TorchScript .pt/.ts)."""
    if (ckpt is None) == (model is None):
        raise UsageError("give exactly one of --ckpt (a training checkpoint) or --model (an exported model)")
    if ckpt is not None:
        return checkpoint_predictor(ckpt, device)
    path = Path(model)
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        if device != "cpu":
            raise UsageError(f"--model {path}: ONNX models run on the CPU here; drop --device {device}")
        return onnx_predictor(path)
    if suffix in TORCHSCRIPT_SUFFIXES:
        return torchscript_predictor(path, device)
    if suffix == ".ckpt":
        raise UsageError(f"{path} is a training checkpoint; pass it with --ckpt")
    raise UsageError(f"{path}: unknown model type '{suffix}' (expected .onnx, or TorchScript .pt/.ts)")
