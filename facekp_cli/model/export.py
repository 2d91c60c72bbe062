"""Model file writers: ONNX (dynamic batch axis) and TorchScript, with facekp metadata.

Verification, quantization and atomic placement are services/export.py's; these only write."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from facekp_cli.model.checkpoint import LoadedModel
from facekp_cli.model.metadata import TORCHSCRIPT_EXTRA_FILE

INPUT_NAME, OUTPUT_NAME = "image", "keypoints"


def export_onnx(loaded: LoadedModel, target: Path, opset: int, props: dict[str, str]) -> None:
    """Write an ONNX file with a dynamic batch axis and facekp metadata_props."""
    import torch

    size, channels = loaded.meta.preprocessing.input_size, loaded.meta.preprocessing.in_channels
    dummy = torch.zeros(2, channels, size, size)
    common = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice is ours to manage
        try:
            torch.onnx.export(
                loaded.model, (dummy,), str(target), dynamo=False, do_constant_folding=True,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, **common,
            )  # fmt: skip
        except (TypeError, RuntimeError, ImportError):  # a torch without the legacy exporter
            batch = torch.export.Dim("batch")
            torch.onnx.export(loaded.model, (dummy,), str(target), dynamo=True,
                              dynamic_shapes=({0: batch},), **common)  # fmt: skip
    write_onnx_metadata(target, props)


def write_onnx_metadata(path: Path, props: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for key, value in props.items():
        entry = existing.get(key) or model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "facekp"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def halve_onnx_weights(path: Path, min_elements: int = 1024) -> int:
    """Store the ONNX file's large float32 weights as float16, each behind a Cast back to float32.

    Half the file; the arithmetic stays float32 (onnxruntime folds the casts once, when the session
    is built), so the only change is each weight rounded to fp16, which the export verification
    measures. Small tensors (biases, norms) stay float32. Returns the number of weights halved.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    halved, casts = [], []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        weights = numpy_helper.to_array(init)
        if weights.size < min_elements:
            continue
        name = init.name
        half = numpy_helper.from_array(weights.astype(np.float16), f"{name}__fp16")
        graph.initializer.remove(init)
        halved.append(half)
        casts.append(
            helper.make_node("Cast", [half.name], [name], to=TensorProto.FLOAT, name=f"{name}__cast")
        )
    graph.initializer.extend(halved)
    nodes = casts + list(graph.node)  # the casts first: the graph's nodes stay in topological order
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return len(halved)


def export_torchscript(loaded: LoadedModel, target: Path, props: dict[str, str]) -> None:
    import torch

    size, channels = loaded.meta.preprocessing.input_size, loaded.meta.preprocessing.in_channels
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(loaded.model, torch.zeros(2, channels, size, size))
        # TorchScript is deprecated in torch 2.13 but still the one self-contained format that
        # libtorch (C++) deployments load; the notice is not the user's to act on.
        torch.jit.save(traced, str(target), _extra_files={TORCHSCRIPT_EXTRA_FILE: json.dumps(props)})
