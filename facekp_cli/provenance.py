"""Where a result came from: git commit, DVC data hash, file digests."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str | None:
    """The current commit, with '-dirty' when the tree has changes; None outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def dvc_data_hash(data_root: str | os.PathLike[str]) -> str | None:
    """The md5 recorded in `<data_root>.dvc` (DVC's directory hash), when the data is tracked."""
    dvc_file = Path(f"{Path(data_root)}.dvc")
    try:
        text = dvc_file.read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"md5:\s*([0-9a-f]{32}(?:\.dir)?)", text)
    return match.group(1) if match else None


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_fingerprint(split) -> str:
    """sha256 of what training reads from a LabelledSplit: file names, byte sizes and labels.

    Recorded in the checkpoint so `train --resume` can tell the same data from other data
    that happens to sit at the same path (a re-synthesised or re-imported faces_data).
    """
    import numpy as np

    digest = hashlib.sha256()
    for index, name in enumerate(split.filenames):
        try:
            size = os.stat(split.image_path(index)).st_size
        except OSError:
            size = -1
        digest.update(f"{name}\0{size}\n".encode())
    digest.update(np.ascontiguousarray(split.keypoints, dtype=np.float32).tobytes())
    return digest.hexdigest()
