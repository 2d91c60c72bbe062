"""`facekp align`: aligned face crops for recognition pipelines, with their transforms.

Every image (or every detected face, with infer.detect) gets its keypoints from the model, a
similarity transform onto the template (facekp_cli/apps/align.py) and a size x size crop. A
CSV beside the crops records, per crop, the forward matrix (photo -> crop pixels) and its inverse
(crop -> photo), so results found in a crop map back: [x', y'] = inverse @ [x, y, 1].
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facekp_cli.apps.align import Alignment, align_face, warp
from facekp_cli.predict.backends import open_predictor
from facekp_cli.predict.sources import find_images
from facekp_cli.predict.stream import ImagePrediction, predict_images
from facekp_cli.settings import Settings

TRANSFORMS_FILE = "transforms.csv"
MATRIX_COLUMNS = ("m00", "m01", "m02", "m10", "m11", "m12")
CSV_COLUMNS = (
    "crop",
    "source",
    "face",
    *MATRIX_COLUMNS,
    *(f"inv_{c}" for c in MATRIX_COLUMNS),
    "scale",
    "angle_deg",
)


@dataclass(frozen=True)
class AlignResult:
    out_dir: Path
    transforms: Path
    images: int
    crops: int
    failed: tuple[tuple[str, str], ...]  # (path, why): unreadable images
    skipped_faces: int  # faces whose eyes or mouth could not be placed
    seconds: float

    @property
    def partial(self) -> bool:
        return bool(self.failed)


def _row(crop: str, source: str, face: int, alignment: Alignment) -> list[str]:
    numbers = [*alignment.matrix.reshape(-1), *alignment.inverse.reshape(-1)]
    return [
        crop,
        source,
        str(face),
        *(f"{v:.6g}" for v in numbers),
        f"{alignment.scale:.6g}",
        f"{alignment.angle_deg:.4f}",
    ]


def run(
    settings: Settings,
    inputs: Sequence[str | Path],
    out_dir: Path,
    *,
    ckpt: Path | None = None,
    model: Path | None = None,
    on_start: Callable[[int], None] | None = None,
    on_image: Callable[[ImagePrediction], None] | None = None,
) -> AlignResult:
    import csv

    from facekp_cli.atomic import atomic_path
    from facekp_cli.model.resolve import resolve
    from facekp_cli.outputs import OutputFolder
    from facekp_cli.plots import save_image
    from facekp_cli.services.infer import finding

    cfg, size, margin = settings.infer, settings.align.size, settings.align.margin
    out_dir = Path(out_dir)
    choice = resolve(settings, ckpt, model, device=cfg.device)
    ckpt, model = choice.ckpt, choice.model
    sources = find_images(inputs, recursive=cfg.recursive)
    names = OutputFolder(out_dir, sources, f".{settings.align.format}")
    predictor = open_predictor(ckpt, model, cfg.device)
    failed: list[tuple[str, str]] = []
    crops = skipped = 0
    started = time.perf_counter()
    transforms = out_dir / TRANSFORMS_FILE
    with atomic_path(transforms) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        if on_start is not None:
            on_start(len(sources))
        results = predict_images(
            predictor,
            sources,
            batch_size=cfg.batch_size,
            workers=cfg.num_workers,
            keep_images=True,
            **finding(settings),
        )
        for result in results:
            if result.error is not None:
                failed.append((str(result.source.path), result.error))
            else:
                faces = [result.points] if result.faces is None else [f.points for f in result.faces]
                for index, points in enumerate(faces):
                    alignment = align_face(np.asarray(points), size, margin)
                    if alignment is None:
                        skipped += 1
                        continue
                    # `a.jpg`, or `a_face1.jpg` for a photo's second face; unique (facekp_cli/outputs.py)
                    tag = "" if result.faces is None else f"_face{index}"
                    name = names.name(result.source, tag)
                    save_image(out_dir / name, warp(result.image, alignment, size))
                    writer.writerow(_row(name, str(result.source.path), index, alignment))
                    crops += 1
            if on_image is not None:
                on_image(result)
    return AlignResult(
        out_dir, transforms, len(sources), crops, tuple(failed), skipped, time.perf_counter() - started
    )
