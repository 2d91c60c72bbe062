"""`facekp data ...`: plain functions taking Settings and returning result dataclasses."""

from __future__ import annotations

from pathlib import Path

from facekp_cli.data.preview import PreviewResult
from facekp_cli.data.synth.generator import SynthResult
from facekp_cli.data.validate import ValidationReport
from facekp_cli.errors import DataError, UsageError
from facekp_cli.settings import Settings


def data_root(settings: Settings, path: Path | None = None) -> Path:
    return Path(path) if path is not None else settings.data.root


def synth(
    settings: Settings,
    n: int,
    seed: int = 0,
    test_fraction: float = 0.1,
    out: Path | None = None,
    workers: int | None = None,
    resume: bool = False,
    shape_from: Path | None = None,
    save_shape: Path | None = None,
    on_progress=None,
) -> SynthResult:
    """Generate the embedded synthetic dataset into `out` (default: data.root).

    `shape_from`: a labelled folder to fit the face geometry on, or a saved shape model (.json);
    `save_shape`: where to write the model used, so a fit can be reused or shipped; `resume`
    continues what a killed run with the same parameters left.
    """
    from facekp_cli.data.synth.generator import synthesize
    from facekp_cli.data.synth.shape import resolve_shape_model, write_shape_model

    model = resolve_shape_model(shape_from)
    if save_shape is not None:
        write_shape_model(model, Path(save_shape))
    root = data_root(settings, out)
    return synthesize(
        root,
        n,
        seed=seed,
        test_fraction=test_fraction,
        workers=workers,
        resume=resume,
        shape_model=model,
        on_progress=on_progress,
    )


def validate(settings: Settings, root: Path | None = None) -> ValidationReport:
    from facekp_cli.data.validate import validate_dataset

    return validate_dataset(data_root(settings, root))


def show(
    settings: Settings,
    out: Path,
    root: Path | None = None,
    split: str = "train",
    n: int = 16,
    seed: int = 0,
    augment: bool = False,
) -> PreviewResult:
    """A grid of samples with their keypoints; with `augment`, beside each its training augmentation."""
    from facekp_cli.data.format import SPLITS, is_split_folder
    from facekp_cli.data.preview import render_preview

    if split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)} (got {split!r})")
    folder = data_root(settings, root)
    # A single-split folder (images/ + gt.csv, as real datasets come) is shown as it is.
    split_dir = folder if is_split_folder(folder) and not (folder / split).is_dir() else folder / split
    if not split_dir.is_dir():
        raise DataError(
            f"{split_dir}: split folder not found "
            f"(make a dataset with `facekp data synth` or `facekp data pull`)"
        )
    return render_preview(
        split_dir,
        Path(out),
        n=n,
        seed=seed,
        augment_with=_training_augmentation(settings) if augment else None,
    )


def _training_augmentation(settings: Settings):
    """The training path for one image: the shared resize to the network input, then augmentation."""
    import numpy as np

    from facekp_cli.data.augment import apply_augmentation, build_pipeline
    from facekp_cli.frame import resize_to_input

    size = settings.model.input_size
    pipeline = build_pipeline(settings.augment) if settings.augment.enabled else None

    def augment(image, points, seed: int):
        height, width = image.shape[:2]
        resized = resize_to_input(image, size)
        scaled = np.asarray(points, np.float32) * np.array([size / width, size / height], np.float32)
        if pipeline is None:
            return resized, scaled
        return apply_augmentation(pipeline, resized, scaled, settings.augment, seed)

    return augment


def push(settings: Settings, root: Path | None = None):
    """Version the dataset with DVC (add + push to data.remote or the default remote)."""
    from facekp_cli.data import dvc_ops

    return dvc_ops.push(data_root(settings, root), settings.data.remote)


def pull(settings: Settings, root: Path | None = None, force: bool = False):
    """Restore the dataset version recorded in <data.root>.dvc from the remote."""
    from facekp_cli.data import dvc_ops

    return dvc_ops.pull(data_root(settings, root), settings.data.remote, force=force)


def status(settings: Settings, root: Path | None = None):
    """Whether the workspace, the .dvc file and the remote agree."""
    from facekp_cli.data import dvc_ops

    return dvc_ops.status(data_root(settings, root), settings.data.remote)


def import_kaggle(settings: Settings, csv_path: Path, out: Path | None, test_fraction: float, seed: int):
    """Kaggle Facial Keypoints Detection training.csv -> facekp format in `out` (default: data.root)."""
    from facekp_cli.data.importers import import_kaggle as run

    return run(csv_path, data_root(settings, out), test_fraction=test_fraction, seed=seed)


def import_ibug(
    settings: Settings,
    src_dir: Path,
    out: Path | None,
    test_fraction: float,
    seed: int,
    margin: float,
    max_side: int,
):
    """A folder of images with 68-point .pts files -> face crops in facekp format."""
    from facekp_cli.data.importers import import_ibug as run

    return run(
        src_dir,
        data_root(settings, out),
        test_fraction=test_fraction,
        seed=seed,
        margin=margin,
        max_side=max_side,
    )
