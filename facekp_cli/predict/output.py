"""Predictions files: JSON (schemas/predictions.v1.json), JSON Lines, or the dataset's gt.csv.

All are written record by record into an open file, so nothing but the current record is held in
memory: JSON into the temporary file of an atomic write; JSON Lines (and CSV with --resume) into the
output itself, appended and flushed per batch, so a killed run keeps what it did (see services/infer.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
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
    # mode: how this image was read (auto mode decides per image): a face crop, or a searched photo
    if result.faces is None:
        entry["mode"] = "crop"
        entry["points"] = points_by_name(result.points, names)
    else:
        entry["mode"] = "photo"
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
            ("\n    " if self.count == 0 else ",\n    ")
            + json.dumps(image_entry(result, self.names), allow_nan=False)
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


# --- streamed outputs: JSON Lines and CSV appended in place, flushed per batch, resumable ---

JSONL_SCHEMA_NAME = "facekp.predictions.jsonl"


class JsonLinesPredictionsWriter:
    """One JSON object per line: a header line (schema, model, names), one line per image entry
    (as in the JSON file's "images"), and a last line {"summary": {...}} once the run completes."""

    def __init__(
        self, fh: TextIO, header: dict[str, Any], names: tuple[str, ...], *, has_header: bool
    ) -> None:
        self.fh, self.names = fh, names
        if not has_header:
            fh.write(
                json.dumps({"schema": JSONL_SCHEMA_NAME, "schema_version": SCHEMA_VERSION, **header}) + "\n"
            )

    def write(self, result: ImagePrediction) -> None:
        self.fh.write(json.dumps(image_entry(result, self.names), allow_nan=False) + "\n")

    def close(self, summary: dict[str, Any]) -> None:
        self.fh.write(json.dumps({"summary": summary}) + "\n")


@dataclass(frozen=True)
class StreamedState:
    """What a streamed output already holds: the end of its last complete record and the keys done."""

    keep_bytes: int  # everything after this (a torn last line, an old summary line) is cut off
    done: frozenset[str]  # JSONL: image paths; CSV: file names
    header: dict[str, Any] | None  # JSONL header line, or {"columns": [...]} for CSV


def _json_kind(value: Any) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def read_streamed_state(path: Path, fmt: str) -> StreamedState:
    """Scan an existing streamed output; a torn last line (a killed writer) is not counted as done."""
    from facekp_cli.errors import DataError

    data = path.read_bytes() if path.is_file() else b""
    keep = data.rfind(b"\n") + 1  # a line without its newline was being written when the run died
    lines = data[:keep].decode("utf-8", errors="replace").splitlines(keepends=True)
    done: set[str] = set()
    header: dict[str, Any] | None = None
    offset = 0
    if fmt == "jsonl":
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path}:{number}: not a JSON Lines record ({exc.msg}); use a new --out"
                ) from exc
            if not isinstance(record, dict):  # `5`, `null`, a list: not a line facekp wrote
                raise DataError(
                    f"{path}:{number}: not a facekp predictions record (a JSON {_json_kind(record)}); "
                    "use a new --out"
                )
            if "schema" in record:
                model = record.get("model")
                if not isinstance(model, dict) or not isinstance(model.get("sha256"), str):
                    raise DataError(f"{path}:{number}: the header line names no model; use a new --out")
                header = record
            elif "summary" in record:
                if number == len(lines):  # a finished run's summary: the resumed run writes its own
                    keep = offset
            elif isinstance(record.get("path"), str):
                done.add(record["path"])
            offset += len(line.encode("utf-8"))
        if lines and header is None:
            raise DataError(f"{path}: not a facekp JSON Lines predictions file (no header line)")
    else:
        import csv

        rows = list(csv.reader(line for line in lines if line.strip()))
        if rows:
            header = {"columns": rows[0]}
            done.update(row[0] for row in rows[1:] if row)
    return StreamedState(keep, frozenset(done), header)
