"""Per-frame keypoints from a video, streamed as JSON Lines or CSV, one record at a time.

JSON Lines: a header line (`"type": "header"`: source, fps, size, model provenance, keypoint
names, settings), one line per frame (`"type": "frame"`: frame index, timestamp and the faces, each
with its id and the 14 named points; a frame without faces has `"faces": []`), and a summary
line (`"type": "summary"`). Every line is flushed as it is written, so `tail -f` follows a camera.

CSV: one row per face per frame, `frame,time_s,face_id,<name>_x,<name>_y,...` in the schema's
point order; a frame without faces has no row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

from facekp_cli.predict.output import DECIMALS, points_by_name
from facekp_cli.video.face_tracks import TrackedFace

VIDEO_SCHEMA = "facekp.video"
VIDEO_SCHEMA_VERSION = 1
FORMATS = ("jsonl", "csv")


def csv_header(names: Sequence[str]) -> list[str]:
    return ["frame", "time_s", "face_id", *(f"{name}_{axis}" for name in names for axis in ("x", "y"))]


class JsonLinesVideoWriter:
    def __init__(self, fh: TextIO, header: dict[str, Any], names: tuple[str, ...]) -> None:
        self.fh, self.names = fh, names
        self._line(
            {"type": "header", "schema": VIDEO_SCHEMA, "schema_version": VIDEO_SCHEMA_VERSION, **header}
        )

    def _line(self, record: dict[str, Any]) -> None:
        self.fh.write(json.dumps(record, allow_nan=False) + "\n")
        self.fh.flush()

    def write(self, index: int, time_s: float, faces: Sequence[TrackedFace]) -> None:
        self._line(
            {
                "type": "frame",
                "frame": index,
                "time_s": round(time_s, 4),
                "faces": [
                    {"id": f.id, "box": f.box.to_dict(), "points": _named(f, self.names)} for f in faces
                ],
            }
        )

    def close(self, summary: dict[str, Any]) -> None:
        self._line({"type": "summary", **summary})


def _named(face: TrackedFace, names: tuple[str, ...]) -> dict[str, Any]:
    # JSON has no NaN: a point the model could not place is null
    named: dict[str, Any] = points_by_name(face.points, names)
    return {k: (v if all(map(_finite, v.values())) else None) for k, v in named.items()}


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))


class CsvVideoWriter:
    def __init__(self, fh: TextIO, names: tuple[str, ...]) -> None:
        import csv

        self.fh = fh
        self._csv = csv.writer(fh, lineterminator="\n")
        self._csv.writerow(csv_header(names))
        fh.flush()

    def write(self, index: int, time_s: float, faces: Sequence[TrackedFace]) -> None:
        for face in faces:
            cells = [f"{v:.{DECIMALS}f}" if _finite(v) else "" for v in face.points.reshape(-1).tolist()]
            self._csv.writerow([index, f"{time_s:.4f}", face.id, *cells])
        self.fh.flush()

    def close(self, summary: dict[str, Any]) -> None:
        pass
