"""Refit the embedded shape model (facekp_cli/data/synth_shape_default.json) on the real faces.

    .venv/bin/python scripts/fit_synth_shape.py ../shared/realdata/facepoints

Every 10th face in filename order (index % 10 == 9, 539 faces) is left out: docs/bench/real.md scores
models on those, so the geometry the generator learns never saw them. gt.csv is read directly (not
through format.py) so that faces whose points lie outside the frame (upside-down crops) count too.
Regenerating the model changes the embedded dataset: rerun `facekp data synth` and `dvc add faces_data`.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from facekp_cli.data.images import displayed_size
from facekp_cli.data.synth.shape import fit_shape_model, write_shape_model

OUT = Path(__file__).resolve().parents[1] / "facekp_cli" / "data" / "synth_shape_default.json"


def held_out(index: int) -> bool:
    return index % 10 == 9


def main(folder: Path) -> None:
    with (folder / "gt.csv").open(newline="", encoding="utf-8") as f:
        rows = sorted(list(csv.reader(f))[1:], key=lambda row: row[0])
    kept = [row for i, row in enumerate(rows) if not held_out(i)]
    keypoints = np.array([[float(c) if c else np.nan for c in row[1:]] for row in kept]).reshape(-1, 14, 2)
    sizes = np.array([displayed_size(folder / "images" / row[0]) for row in kept], np.float64)
    source = {
        "fitted_on": f"{len(kept)} real labelled face crops (the team's 14-point 'facepoints' set, every "
        "10th filename held out for validation)",
        "made_by": "scripts/fit_synth_shape.py",
        "contains": "numbers only: a mean shape, principal modes and 1-D quantile tables; no images",
    }
    model = fit_shape_model(keypoints, sizes, source)
    write_shape_model(model, OUT)
    print(f"{OUT}: {model.source['faces']} faces, {model.source['modes']} modes, digest {model.digest()}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
