"""Atomic file output: write to a temporary file beside the target, then rename over it.

An interrupted command therefore leaves either the previous file or the new one, never half.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from facekp_cli.errors import UsageError


def _cannot_write(target: Path, exc: OSError) -> UsageError:
    parent = next((p for p in target.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        reason = f"{parent} is a file, not a folder"
    elif target.is_dir():
        reason = "it is a folder"
    else:
        reason = exc.strerror or str(exc)
    return UsageError(f"{target}: cannot write output ({reason})")


def _new_file_mode(target: Path) -> int:
    """The mode a plain open() would give: the old file's, else 0o666 less the umask (mkstemp uses 0o600)."""
    with contextlib.suppress(OSError):
        return target.stat().st_mode & 0o777
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces the target."""
    target = Path(target)
    if target.is_dir():
        raise _cannot_write(target, IsADirectoryError())
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _cannot_write(target, exc) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():  # the writer may have replaced the file; keep the mode it would have had
            os.chmod(tmp, _new_file_mode(target))
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise _cannot_write(target, exc) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(target)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> Path:
    return write_bytes_atomic(target, text.encode("utf-8"))
