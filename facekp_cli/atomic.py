"""Atomic file output: write to a temporary file beside the target, then rename over it.

An interrupted command therefore leaves either the previous file or the new one, never half.
The temporary file's name carries the writer's process id (`.NAME.<pid>.XXXX.tmp`), so the next
write to the same target removes the temporaries of writers that died (kill -9, power loss) and
leaves a live neighbour's alone. A full disk is an error that names the target, not a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from facekp_cli.errors import UsageError
from facekp_cli.outputs import check_name_length


def _cannot_write(target: Path, exc: OSError) -> UsageError:
    parent = next((p for p in target.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        reason = f"{parent} is a file, not a folder"
    elif target.is_dir():
        reason = "it is a folder"
    else:
        reason = exc.strerror or str(exc)
    return UsageError(f"{target}: cannot write output ({reason})")


def _no_space(target: Path, exc: OSError) -> UsageError:
    return UsageError(f"{target}: cannot write output ({exc.strerror or 'no space left on device'})")


def is_full_disk(exc: BaseException) -> bool:
    """ENOSPC or EDQUOT: the file system or the user's quota is full."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def temp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def stale_temporaries(target: Path) -> list[Path]:
    """Temporaries of `target` left by writers that are no longer running (`.NAME.<pid>.XXXX.tmp`)."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)\.[^/]*\.tmp$")
    stale = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            found = pattern.match(entry.name)
            if found and int(found.group(1)) != os.getpid() and not pid_alive(int(found.group(1))):
                stale.append(Path(entry.path))
    return sorted(stale)


def remove_stale_temporaries(target: Path) -> list[Path]:
    removed = []
    for path in stale_temporaries(target):
        with contextlib.suppress(OSError):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


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
    check_name_length(target, "output")  # Path.is_dir() itself raises on a name the system cannot hold
    if target.is_dir():
        raise _cannot_write(target, IsADirectoryError())
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target)
    except OSError as exc:
        raise (_no_space(target, exc) if is_full_disk(exc) else _cannot_write(target, exc)) from exc
    try:
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target), suffix=".tmp", dir=target.parent)
        except OSError as exc:
            raise (_no_space(target, exc) if is_full_disk(exc) else _cannot_write(target, exc)) from exc
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        if tmp.exists():  # the writer may have replaced the file; keep the mode it would have had
            os.chmod(tmp, _new_file_mode(target))
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise _cannot_write(target, exc) from exc
    except BaseException as exc:
        # By this process's own prefix, not by name: a Ctrl-C between mkstemp and the assignment
        # of its name (seen under load) must not leave the temporary behind either.
        prefix = temp_prefix(target)  # compared as text: a name may hold glob characters
        with contextlib.suppress(OSError):
            for leftover in target.parent.iterdir():
                if leftover.name.startswith(prefix) and leftover.name.endswith(".tmp"):
                    leftover.unlink(missing_ok=True)
        if is_full_disk(exc):  # whatever wrote the temporary, the user needs the real target's name
            raise _no_space(target, exc) from exc
        raise


def raise_if_full_disk(exc: BaseException, target: str | os.PathLike[str]) -> None:
    """Turn a full disk met while writing `target` (directly, not through atomic_path) into a named error."""
    if is_full_disk(exc):
        raise _no_space(Path(target), exc) from exc


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(target)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> Path:
    return write_bytes_atomic(target, text.encode("utf-8"))
