"""Turn the PATH arguments of `facekp infer` (files, folders, glob patterns) into image files."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from facekp_cli.errors import DataError, UsageError
from facekp_cli.media import IMAGE_EXTENSIONS, is_image_file


@dataclass(frozen=True)
class ImageSource:
    path: Path  # as given or found (not resolved: outputs show the user's own paths)
    name: str  # relative to the folder it was found in, '/'-separated: the CSV filename


def _has_magic(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _glob_base(pattern: str) -> Path:
    """The folder part of a pattern before its first wildcard: names are made relative to it."""
    parts = Path(pattern).parts
    base: list[str] = []
    for part in parts[:-1]:
        if _has_magic(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def _scan_folder(folder: Path, recursive: bool) -> Iterable[Path]:
    walker = folder.rglob("*") if recursive else folder.iterdir()
    for path in walker:
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):  # hidden files and folders
            continue
        if is_image_file(path) and path.is_file():
            yield path


def find_images(inputs: Sequence[str | os.PathLike[str]], recursive: bool = False) -> list[ImageSource]:
    """Every image named by `inputs`, in a stable order; missing paths and empty results are errors."""
    if not inputs:
        raise UsageError("no input given: pass image files, folders or glob patterns")
    found: list[ImageSource] = []
    seen: set[Path] = set()

    def add(path: Path, base: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(ImageSource(path, path.relative_to(base).as_posix()))

    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            for image in sorted(_scan_folder(path, recursive)):
                add(image, path)
        elif path.is_file() or path.is_symlink():
            add(path, path.parent)  # an explicit file is tried whatever its extension
        elif _has_magic(text):
            base = _glob_base(text)
            for match in sorted(glob.glob(text, recursive=recursive)):
                if Path(match).is_file():
                    add(Path(match), base)
        else:
            raise DataError(f"{text}: no such file or folder")
    if not found:
        names = ", ".join(os.fspath(i) for i in inputs)
        hint = "" if recursive else "; add --recursive to search subfolders"
        raise DataError(f"no images found in {names} (looked for {', '.join(IMAGE_EXTENSIONS)}{hint})")
    return found
