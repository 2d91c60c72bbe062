"""facekp's predictor as an MLflow Model (python_function flavour).

`mlflow.pyfunc.load_model("models:/NAME/VERSION").predict(frame)` and `mlflow models serve` call
`FacekpPyfunc.predict`: decode -> the shared preprocessing -> the exported model (ONNX or
TorchScript, the Model's one artifact) -> pixels of each input image, as 28 columns
`<point>_x`, `<point>_y` named after the 14 keypoints.

Input: a DataFrame (or a list) with one column `image`; each value is the image file's bytes
encoded as base64 (what an HTTP client sends), raw bytes (in Python), or a path to an image file
on the machine running the model. MLflow imports this module only when it loads or logs a model.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import warnings
from pathlib import Path

import numpy as np
from mlflow.pyfunc import PythonModel

from facekp_cli.keypoints import NAMES

INPUT_COLUMN = "image"
ARTIFACT_KEY = "model"
PREDICT_BATCH = 32


def output_columns() -> list[str]:
    return [f"{name}_{axis}" for name in NAMES for axis in ("x", "y")]


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    inputs = Schema([ColSpec(DataType.string, INPUT_COLUMN)])
    outputs = Schema([ColSpec(DataType.double, column) for column in output_columns()])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(count: int = 1):
    """Generated face crops as base64 JPEG: what a client of `mlflow models serve` sends."""
    import cv2
    import pandas as pd

    from facekp_cli.data.synth.generator import render_image

    encoded = []
    for index in range(count):
        ok, jpeg = cv2.imencode(".jpg", render_image(7, index).image)  # BGR in, as the generator draws
        assert ok, "OpenCV could not encode a generated picture"
        encoded.append(base64.b64encode(jpeg.tobytes()).decode("ascii"))
    return pd.DataFrame({INPUT_COLUMN: encoded})


def _image_values(model_input) -> list:
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        if INPUT_COLUMN in model_input.columns:
            return list(model_input[INPUT_COLUMN])
        if len(model_input.columns) == 1:
            return list(model_input.iloc[:, 0])
        raise ValueError(f"expected a column '{INPUT_COLUMN}', got {list(model_input.columns)}")
    if isinstance(model_input, dict):
        values = model_input.get(INPUT_COLUMN)
        return list(values) if isinstance(values, list | tuple) else [values]
    if isinstance(model_input, str | bytes):
        return [model_input]
    return list(model_input)


def decode_value(value, row: int) -> np.ndarray:
    """One input value (base64 string, bytes or path) to an RGB array; ValueError names the row."""
    from facekp_cli.data.images import decode_image, decode_image_bytes
    from facekp_cli.errors import ImageDecodeError

    label = f"row {row}"
    try:
        if isinstance(value, bytes | bytearray | memoryview):
            return decode_image_bytes(bytes(value), label)
        if isinstance(value, str):
            text = value.split(",", 1)[1] if value.startswith("data:") else value
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                data = None  # not base64: a path (paths hold '.' or '/' runs base64 rejects or misreads)
            if data is not None and not os.path.isfile(value):
                return decode_image_bytes(data, f"{label} (base64)")
            return decode_image(Path(value))
    except ImageDecodeError as exc:
        raise ValueError(str(exc)) from exc
    raise ValueError(f"{label}: expected base64 text, bytes or a file path, got {type(value).__name__}")


@contextlib.contextmanager
def _without_type_hint_notice():
    """MLflow suggests type hints on `predict` when the class is defined (under its own "once"
    filter, so a warnings filter cannot hide it); the explicit signature describes the input."""
    with warnings.catch_warnings():
        shown = warnings.showwarning
        warnings.showwarning = lambda message, *args, **kwargs: (
            None if "type hints" in str(message) else shown(message, *args, **kwargs)
        )
        yield


with _without_type_hint_notice():

    class FacekpPyfunc(PythonModel):
        """Loads the exported model artifact once; predicts the 14 named points in pixels."""

        def load_context(self, context) -> None:
            from facekp_cli.predict.backends import open_predictor

            self.predictor = open_predictor(model=context.artifacts[ARTIFACT_KEY])

        def predict(self, context, model_input, params=None):
            import pandas as pd

            from facekp_cli.frame import normalised_to_points, prepare_image

            values = _image_values(model_input)
            prep = self.predictor.meta.preprocessing
            rows = []
            for start in range(0, len(values), PREDICT_BATCH):
                chunk = values[start : start + PREDICT_BATCH]
                images = [decode_value(v, start + i) for i, v in enumerate(chunk)]
                batch = np.stack([prepare_image(image, prep) for image in images])
                widths = np.array([image.shape[1] for image in images], np.float64)
                heights = np.array([image.shape[0] for image in images], np.float64)
                points = normalised_to_points(self.predictor.predict(batch), widths, heights)
                rows.extend(points.reshape(len(images), -1).astype(np.float64))
            columns = output_columns()
            return pd.DataFrame(np.asarray(rows).reshape(-1, len(columns)), columns=columns)
