"""Training outputs that neighbours cannot corrupt: one process per run folder, whole checkpoint files.

Two `facekp train` started at once with the same --run-name must not write into one folder (their
checkpoints would interleave), and two unnamed runs started in the same second must not pick the
same timestamp folder. A run folder is claimed with an exclusive lock (`.lock`, held by the process
until it exits, so a killed run never leaves a stale claim); a timestamp folder is created
exclusively and the next free suffix taken on a clash. Checkpoints are written through
`AtomicCheckpointIO`: a full disk or a kill mid-save leaves the previous checkpoint, never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from facekp_cli.atomic import atomic_path
from facekp_cli.errors import UsageError

LOCK_NAME = ".lock"
_held: list[Any] = []  # open lock files: the claim lasts as long as the process


def _lock(run_dir: Path) -> bool:
    fh = open(run_dir / LOCK_NAME, "a")  # noqa: SIM115 (kept open on purpose)
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return False
    _held.append(fh)
    return True


def _suffixed(base: Path, n: int) -> Path:
    """The n-th candidate for a run folder: base, base-2, base-3, ..."""
    return base if n == 1 else base.with_name(f"{base.name}-{n}")


def _name_taken(run_dir: Path, last_name: str) -> UsageError:
    return UsageError(
        f"{run_dir}: a run with this name exists; choose another --run-name or "
        f"--resume {run_dir / (last_name + '.ckpt')}"
    )


def plan_run_folder(out_dir: Path, run_name: str | None, stamp: str, *, last_name: str) -> Path:
    """The folder a new run would use: out_dir/run_name, else out_dir/stamp[-n], the first not there."""
    if run_name:
        run_dir = out_dir / run_name
        if (run_dir / f"{last_name}.ckpt").exists():
            raise _name_taken(run_dir, last_name)
        return run_dir
    n = 1
    while _suffixed(out_dir / stamp, n).exists():
        n += 1
    return _suffixed(out_dir / stamp, n)


def claim_run_folder(run_dir: Path, *, named: bool, resuming: bool, last_name: str) -> Path:
    """Create and lock the run folder; returns the folder actually claimed."""
    if named or resuming:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not _lock(run_dir):
            raise UsageError(
                f"{run_dir}: another facekp train is writing this run folder; choose another --run-name"
            )
        if not resuming and (run_dir / f"{last_name}.ckpt").exists():  # finished while we waited
            raise _name_taken(run_dir, last_name)
        return run_dir
    base, n = run_dir, 1
    while True:
        run_dir = _suffixed(base, n)
        try:
            run_dir.mkdir(parents=True)  # exclusive: a neighbour of the same second gets the next suffix
        except FileExistsError:
            n += 1
            continue
        if _lock(run_dir):
            return run_dir


def release_run_folder(run_dir: Path) -> None:
    """Drop this process's claim once training is over (a later run in the same process, e.g.
    `--resume` after Ctrl-C or a tuning trial, may claim it again) and leave no lock file behind."""
    target = (Path(run_dir) / LOCK_NAME).resolve()
    for fh in list(_held):
        if Path(fh.name).resolve() == target:
            with contextlib.suppress(OSError):
                target.unlink()
            fh.close()  # closing releases the flock
            _held.remove(fh)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint writer, through a temporary file renamed over the target."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)
