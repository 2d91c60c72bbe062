"""Which model answers: the one home of that rule, for every verb that runs a model.

Order: what the user named (`--ckpt` / `--model`) > the stable checkpoint local training left
(`train.best_path`) > the default model shipped inside the package, trained only on facekp's own
synthetic faces (docs/MODEL_CARD.md; rebuilt by `make default-model`). The name `default` (e.g.
`--ckpt default`, `--set train.init_from=default`) means the shipped model unless a file of that
name exists. On the CPU, a verb that only runs the model (infer, eval, overlay, align, video) gets
the shipped default through its ONNX twin (`facekp-default.onnx`: the same fp16 weights, written and
checked against the checkpoint by `make default-model`), which answers without importing torch: a
one-photo `facekp infer` starts in about a second instead of two and a half. Which model answered is
said in one line through the notice hook, which the CLI points at stderr (silent with --quiet, and
for library callers that set none) when the user named no model (or named `default`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from facekp_cli.settings import Settings

DEFAULT_NAME = "default"
DEFAULT_FILE = "facekp-default.ckpt"  # package data: facekp_cli/model/shipped/
DEFAULT_ONNX_FILE = "facekp-default.onnx"  # its ONNX twin (same weights), for CPU inference
DEFAULT_EXPORT_STEM = "facekp-default"  # exports of the shipped model are written to the cwd

_notice: Callable[[str], None] | None = None


def set_notice(hook: Callable[[str], None] | None) -> None:
    """Where the "which model answered" line goes (the CLI: stderr unless --quiet)."""
    global _notice
    _notice = hook


@dataclass(frozen=True)
class ModelChoice:
    ckpt: Path | None  # a checkpoint, or None when `model` (an exported file) answers
    model: Path | None
    source: str  # "--ckpt", "--model", "train.best_path", "train.init_from" or "default"

    @property
    def is_default(self) -> bool:
        return self.source == DEFAULT_NAME or (
            self.ckpt is not None and self.ckpt == default_checkpoint_path()
        )

    def describe(self) -> str:
        path = self.ckpt if self.ckpt is not None else self.model
        if self.is_default:
            return f"model: facekp's shipped default ({path}; synthetic faces only, docs/MODEL_CARD.md)"
        return f"model: {path} ({self.source})"


def default_checkpoint_path() -> Path:
    """The shipped default checkpoint, read from the installed package (no download)."""
    return _shipped(resources.files("facekp_cli.model").joinpath("shipped", DEFAULT_FILE))


def default_onnx_path() -> Path | None:
    """The shipped default's ONNX twin, or None where this install lacks it (the checkpoint answers)."""
    ref = resources.files("facekp_cli.model").joinpath("shipped", DEFAULT_ONNX_FILE)
    return _shipped(ref) if ref.is_file() else None


def _shipped(ref) -> Path:
    if isinstance(ref, Path):  # a regular install or a source checkout: the file itself
        return ref
    # A zipped install: torch and onnxruntime need a real file, so copy it out once per process.
    return _extracted(ref)


_EXTRACTED: dict[str, Path] = {}


def _extracted(ref) -> Path:
    import tempfile

    key = str(ref)
    if key not in _EXTRACTED:
        folder = Path(tempfile.mkdtemp(prefix="facekp-default-"))
        target = folder / ref.name
        target.write_bytes(ref.read_bytes())
        _EXTRACTED[key] = target
    return _EXTRACTED[key]


def named_default(path: str | os.PathLike[str] | None) -> bool:
    """True when `path` is the word `default` and no file of that name is there to mean instead."""
    return path is not None and str(path) == DEFAULT_NAME and not Path(path).exists()


def notify(line: str) -> None:
    """One line about the model through the notice hook (the CLI: stderr unless --quiet)."""
    if _notice is not None:
        _notice(line)


def _announce(choice: ModelChoice) -> ModelChoice:
    # Only a model the user did not name is announced: a named one needs no line, and error
    # output stays the one line that names the problem.
    if choice.source in ("train.best_path", DEFAULT_NAME):
        notify(f"facekp: {choice.describe()}")
    return choice


def _default(device: str | None) -> ModelChoice:
    twin = default_onnx_path() if device == "cpu" else None
    if twin is not None:
        return ModelChoice(None, twin, DEFAULT_NAME)
    return ModelChoice(default_checkpoint_path(), None, DEFAULT_NAME)


def resolve(
    settings: Settings, ckpt: Path | None = None, model: Path | None = None, *, device: str | None = None
) -> ModelChoice:
    """The model for inference, evaluation or export; announced once through the notice hook.

    `device`: set by the verbs that only run the model, on that device; "cpu" lets the shipped
    default answer through its ONNX twin. Left unset where the checkpoint itself is needed (export).
    """
    if ckpt is not None and model is not None:  # open_predictor refuses it with the flags' names
        return ModelChoice(Path(ckpt), Path(model), "--ckpt")
    if model is not None:
        return _announce(ModelChoice(None, Path(model), "--model"))
    if ckpt is not None:
        if named_default(ckpt):
            return _announce(_default(device))
        return _announce(ModelChoice(Path(ckpt), None, "--ckpt"))
    best = Path(settings.train.best_path)
    if best.is_file():
        return _announce(ModelChoice(best, None, "train.best_path"))
    return _announce(_default(device))


def resolve_init_from(path: str | os.PathLike[str]) -> ModelChoice:
    """`train.init_from`: a checkpoint path, or `default` for the shipped model."""
    if named_default(path):
        return _announce(ModelChoice(default_checkpoint_path(), None, DEFAULT_NAME))
    return _announce(ModelChoice(Path(path), None, "train.init_from"))
