"""The one rule for per-input output files (overlay images, align crops, infer --draw drawings).

Every verb that writes one file per input image into an output folder asks `OutputFolder` for
the file's name. The rule, in one place:

- never over an input: an output folder that is one of the input folders, or a planned output
  that is an input file, is refused before any work starts;
- never outside the folder given: names are the inputs' relative names with `..`, absolute and
  hidden parts dropped, and the resolved target must lie inside the resolved output folder (a
  symlinked subfolder leading out is refused);
- never twice: two inputs that would share an output name (`x.jpg` and `x.png`, `a.jpg` in two
  folders given) get distinct names. The first input, in the order found, keeps the plain name;
  a later one gets its own extension added when that differs from the first's (`x_png.jpg`),
  else the first free number (`a_2.jpg`). The names
  are fixed before any image is read, so they are the same on every run over the same inputs,
  and the CSV/JSON rows that name an output name it exactly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol

from facekp_cli.errors import UsageError

NAME_MAX = 255  # bytes in one file name on ext4, xfs, btrfs, APFS and NTFS (in UTF-16 units there)


class _Source(Protocol):
    path: Path
    name: str


def name_too_long(path: str | os.PathLike[str], flag: str = "") -> UsageError:
    text = os.fspath(path)
    longest = max((len(os.fsencode(p)) for p in Path(text).parts), default=0)
    shown = text if len(text) <= 80 else f"{text[:40]}...{text[-20:]}"
    return UsageError(
        f"{flag + ' ' if flag else ''}{shown}: file name too long "
        f"({longest} bytes in one name; file systems allow {NAME_MAX})"
    )


def check_name_length(path: str | os.PathLike[str], flag: str = "--out") -> None:
    """One clear line for a path with a component the file system cannot hold (before any work)."""
    if any(len(os.fsencode(part)) > NAME_MAX for part in Path(path).parts):
        raise name_too_long(path, flag)


def refuse_input_as_output(
    out: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]], flag: str = "--out"
) -> None:
    """A single output file (predictions, a video) must not be one of the inputs it is made from:
    written atomically, it would replace the input when it is renamed into place."""
    target = Path(out).resolve()
    for item in inputs:
        if Path(item).resolve() == target:
            raise UsageError(f"{flag} {out}: is the input {item}; it would be replaced, choose another file")


def safe_relative(name: str) -> PurePosixPath:
    """An input's relative name made safe to join to an output folder: no `..`, root or hidden part.

    `a[b]/../../g/src/x.jpg` (what a glob can produce) becomes `a[b]/g/src/x.jpg`, `../.x.jpg`
    becomes `x.jpg`; a name left with no part becomes `_`.
    """
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    parts = [p.lstrip(".") or "_" for p in parts] or ["_"]
    return PurePosixPath(*parts)


def _source_key(source: _Source) -> tuple[str, str]:
    return os.fspath(source.path), source.name


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


class OutputFolder:
    """Unique, safe output names for one folder of per-input files, all with `suffix` (".jpg")."""

    def __init__(self, out_dir: str | os.PathLike[str], sources: Sequence[_Source], suffix: str) -> None:
        self.out_dir = Path(out_dir)
        self.suffix = suffix
        check_name_length(self.out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise UsageError(f"--out {self.out_dir}: is a file, not a folder")
        self._root = self.out_dir.resolve()
        self._inputs = {Path(s.path).resolve(): Path(s.path) for s in sources}
        for source in sources:
            if Path(source.path).resolve().parent == self._root:
                raise UsageError(
                    f"--out {self.out_dir}: is the folder of the input {source.path}; outputs would "
                    "mix with (or replace) the inputs, choose another folder"
                )
        self._used: set[str] = set()
        self._names: dict[int, str] = {}
        self._index = {_source_key(source): index for index, source in enumerate(sources)}
        self._plan(sources)
        for index, source in enumerate(sources):
            self._check(self._names[index], source)

    @staticmethod
    def _key(name: str) -> str:
        return name.casefold()  # two names differing only in case are one file on macOS and Windows

    def _plan(self, sources: Sequence[_Source]) -> None:
        relative = [safe_relative(s.name) for s in sources]
        stems = [r.with_suffix("").as_posix() for r in relative]
        winner: dict[str, int] = {}  # output name -> the source that keeps it
        losers = []
        for index, stem in enumerate(stems):
            key = self._key(stem + self.suffix)
            if key in winner:
                losers.append((index, winner[key]))
            else:
                winner[key] = index
                self._used.add(key)
                self._names[index] = stem + self.suffix
        for index, first in losers:
            extension = relative[index].suffix.lstrip(".")
            differs = extension.casefold() != relative[first].suffix.lstrip(".").casefold()
            candidates = [f"{stems[index]}_{extension}"] if extension and differs else []
            candidates += (f"{stems[index]}_{n}" for n in range(2, len(sources) + 3))
            self._names[index] = self._claim(candidates)

    def _claim(self, stems) -> str:
        for stem in stems:
            name = stem + self.suffix
            if self._key(name) not in self._used:
                self._used.add(self._key(name))
                return name
        raise AssertionError("unreachable: more candidates than names")  # pragma: no cover

    def _check(self, name: str, source: _Source) -> None:
        target = (self._root / name).resolve()
        if not _inside(target, self._root):
            raise UsageError(f"--out {self.out_dir}: {name} for {source.path} would be written outside it")
        if target in self._inputs:
            raise UsageError(
                f"--out {self.out_dir}: {name} would replace the input {self._inputs[target]}; "
                "choose another output folder"
            )
        check_name_length(target, "--out")

    def name(self, source: _Source, tag: str = "") -> str:
        """The output name (relative, '/'-separated) of one of the sources; `tag` marks a second
        file from the same input (`_face1`), kept distinct from every other name."""
        index = self._index[_source_key(source)]
        if not tag:
            return self._names[index]
        stem = self._names[index][: -len(self.suffix)] if self.suffix else self._names[index]
        name = self._claim([stem + tag, *(f"{stem}{tag}_{n}" for n in range(2, len(self._used) + 3))])
        target = (self._root / name).resolve()
        if not _inside(target, self._root) or target in self._inputs:
            raise UsageError(f"--out {self.out_dir}: {name} would be written outside it or over an input")
        return name

    def path(self, name: str) -> Path:
        return self.out_dir / name
