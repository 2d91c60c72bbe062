"""The offline journal: tracking calls a server did not take, as JSON lines.

A tracking server that stops answering does not stop the work: each call that fails is
appended here (one JSON line per call, under tracking.pending_dir) and replayed later by
experiments/replay.py, at the next epoch end or with `facekp tracking sync`."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from facekp_cli.settings import Settings


class PendingJournal:
    """Calls a tracking server did not take, kept as JSON lines to replay later, in order.

    Files the calls refer to that would not outlive the command (temporary pictures, reports) are
    copied beside the journal; lasting ones (checkpoints, exported models) are referred to by path.
    """

    def __init__(self, folder: Path, key: str, uri: str) -> None:
        self.folder, self.uri = Path(folder), uri
        self.path = self.folder / f"{key}.jsonl"
        self.files = self.folder / key

    def add(self, op: dict[str, Any]) -> None:
        from facekp_cli.atomic import raise_if_full_disk

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"uri": self.uri, **op}) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise_if_full_disk(exc, self.path)
            raise

    def keep_file(self, path: str | Path) -> str:
        """The file as it is now, kept in the journal's own folder until the journal is replayed
        (replay sends nothing from elsewhere). A hard link where the file system allows it (a
        checkpoint costs no space; atomic rewrites of the original leave the link's content alone),
        else a copy."""
        folder = self.files / uuid.uuid4().hex[:8]  # the artifact keeps its own name
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / Path(path).name
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        return str(target.resolve())


def journal_key(prefix: str, run_id: str | None) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{prefix}-{(run_id or uuid.uuid4().hex)[:12]}"


_STR, _OPT_STR, _LIST = (str,), (str, type(None)), (list,)

# The fields each journalled call needs, with their types: what `_apply` reads.
_OP_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "params": {"run_id": _STR, "params": _LIST},
    "metrics": {"run_id": _STR, "metrics": _LIST},
    "artifact": {"run_id": _STR, "path": _STR, "artifact_path": _OPT_STR},
    "terminate": {"run_id": _STR, "status": _STR},
    "register": {"run_id": _OPT_STR, "path": _STR, "name": _STR, "fmt": _STR, "experiment": _STR},
}


@dataclasses.dataclass(frozen=True)
class JournalContents:
    ops: list[dict[str, Any]]  # the calls to send, in order
    skipped: list[str]  # "<journal>:<line>: <why>" for each damaged line, which is never sent


def _op_problem(op: Any, files: Path) -> str | None:
    """Why a decoded journal line cannot be replayed, or None."""
    if not isinstance(op, dict):
        return f"not a journalled call ({type(op).__name__})"
    kind = op.get("op")
    if kind not in _OP_FIELDS:
        return f"unknown journalled call {kind!r}"
    if not isinstance(op.get("uri"), str):
        return "no server URI ('uri')"
    for key, types in _OP_FIELDS[kind].items():
        if not isinstance(op.get(key), types):
            return f"'{key}' missing or not a {' or '.join(t.__name__ for t in types)}"
    if kind == "params" and not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) for v in p) for p in op["params"]
    ):
        return "'params' must be [name, value] string pairs"
    if kind == "metrics" and not all(
        isinstance(m, list)
        and len(m) == 4
        and isinstance(m[0], str)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in m[1:])
        for m in op["metrics"]
    ):
        return "'metrics' must be [name, value, timestamp, step] entries"
    if kind == "register" and not (
        isinstance(op.get("aliases", []), list) and all(isinstance(a, str) for a in op.get("aliases", []))
    ):
        return "'aliases' must be a list of names"
    if "path" in _OP_FIELDS[kind]:
        try:
            resolved = Path(op["path"]).resolve()
        except (OSError, ValueError) as exc:  # a NUL byte, a name the file system cannot hold
            return f"unusable file path ({exc})"
        if not resolved.is_relative_to(files.resolve()):
            return f"file {op['path']} is outside the journal's folder {files}; not sent"
    return None


def read_journal(path: Path) -> JournalContents:
    """The one reader of a pending journal. Damaged lines (a torn last line from a kill, bytes that
    are not UTF-8, JSON that is not a call, missing or mistyped fields, a file outside the journal's
    own folder) are skipped and reported; the rest is returned in order. Raises OSError only when
    the file itself cannot be read."""
    files = path.with_suffix("")
    data = path.read_bytes()
    ops: list[dict[str, Any]] = []
    skipped: list[str] = []
    raw_lines = data.split(b"\n")
    for number, raw in enumerate(raw_lines, 1):
        if not raw.strip():
            continue
        torn = number == len(raw_lines)  # no newline after it: the write was cut short
        try:
            op = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            skipped.append(f"{path}:{number}: not UTF-8 text")
            continue
        except json.JSONDecodeError as exc:
            why = "torn last line (an interrupted write)" if torn else f"not JSON ({exc.msg})"
            skipped.append(f"{path}:{number}: {why}")
            continue
        problem = _op_problem(op, files)
        if problem is not None:
            skipped.append(f"{path}:{number}: {problem}")
        else:
            ops.append(op)
    return JournalContents(ops, skipped)


def pending_journals(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("*.jsonl")) if Path(folder).is_dir() else []


def offline_warning(uri: str, journal: PendingJournal, exc: BaseException) -> str:
    reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return (
        f"MLflow at {uri} stopped answering ({reason}); the run goes on and its tracking calls are kept "
        f"in {journal.path}, sent when the server is back or with: facekp tracking sync"
    )


def keep_calls(
    settings: Settings, uri: str, prefix: str, run_id: str | None, ops: list[dict[str, Any]]
) -> Path:
    journal = PendingJournal(settings.tracking.pending_dir, journal_key(prefix, run_id), uri)
    for op in ops:
        if "path" in op:  # eval's files live in a temporary folder; replay sends only the journal's own
            op = {**op, "path": journal.keep_file(op["path"])}
        journal.add(op)
    return journal.path
