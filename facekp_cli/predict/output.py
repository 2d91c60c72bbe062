"""Predictions files: JSON (schema facekp_cli/schemas/predictions.v1.json) or the dataset's gt.csv.

Both are written record by record into an open file (the temporary file of an atomic write),
so nothing but the current record is held in memory.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, TextIO

import numpy as np

from facekp_cli.data.format import format_gt_csv
from facekp_cli.predict.stream import ImagePrediction

SCHEMA_NAME = "facekp.predictions"
SCHEMA_VERSION = 1
SCHEMA_FILE = "predictions.v1.json"
DECIMALS = 4


def load_schema() -> dict[str, Any]:
    """The shipped JSON Schema of the predictions file."""
    text = resources.files("facekp_cli").joinpath("schemas", SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def points_by_name(points: np.ndarray, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    return {
        name: {"x": round(float(x), DECIMALS), "y": round(float(y), DECIMALS)}
        for name, (x, y) in zip(names, points, strict=True)
    }


def image_entry(result: ImagePrediction, names: tuple[str, ...]) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": str(result.source.path), "name": result.source.name}
    if result.error is not None:
        entry["error"] = result.error
        return entry
    entry["width"], entry["height"] = result.width, result.height
    if result.faces is None:
        entry["points"] = points_by_name(result.points, names)
    else:
        entry["faces"] = [
            {"box": f.box.to_dict(), "crop": f.crop.to_dict(), "points": points_by_name(f.points, names)}
            for f in result.faces
        ]
    return entry


class JsonPredictionsWriter:
    """Streams `{header..., "images": [entry, ...], "summary": {...}}`."""

    def __init__(self, fh: TextIO, header: dict[str, Any], names: tuple[str, ...]) -> None:
        self.fh, self.names, self.count = fh, names, 0
        head = {"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, **header}
        fh.write(json.dumps(head, indent=2)[:-2] + ',\n  "images": [')

    def write(self, result: ImagePrediction) -> None:
        self.fh.write(
            ("\n    " if self.count == 0 else ",\n    ") + json.dumps(image_entry(result, self.names))
        )
        self.count += 1

    def close(self, summary: dict[str, Any]) -> None:
        self.fh.write(("\n  ]" if self.count else "]") + ',\n  "summary": ' + json.dumps(summary) + "\n}\n")


class CsvPredictionsWriter:
    """gt.csv rows, names relative to the input folder. Unreadable files get no row; in detect mode
    each image gets the largest face's points, or an empty row when no face was found."""

    def __init__(self, fh: TextIO, names: tuple[str, ...]) -> None:
        self.fh, self.names, self.header_written = fh, names, False

    def write(self, result: ImagePrediction) -> None:
        if result.error is not None:
            return
        if result.faces is None:
            points = result.points
        elif result.faces:
            points = result.faces[0].points
        else:
            points = np.full((len(self.names), 2), np.nan, np.float32)
        text = format_gt_csv([result.source.name], points[None])
        if self.header_written:
            text = text.split("\n", 1)[1]
        self.header_written = True
        self.fh.write(text)

    def close(self, summary: dict[str, Any]) -> None:
        if not self.header_written:
            self.fh.write(format_gt_csv([], np.zeros((0, len(self.names), 2))))
