"""Rebuild a synthetic dataset version from its recipe when no DVC remote holds it.

The embedded default set is a pure function of (generator version, n, seed, test fraction), so a
fresh clone needs no remote to get it: `facekp data pull` regenerates it and accepts the result
only if its DVC hash equals the md5 in the .dvc file. The recipe comes from the .dvc file's
`meta.facekp_synth` (written by `facekp data push` for any synthetic set), else, for a .dvc file
without it, from the file count of the default set (`facekp data synth` with its defaults).
Nothing is trusted: whatever the recipe says, the hash decides.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from facekp_cli.errors import DataError

META_KEY = "facekp_synth"  # the .dvc file's `meta:` entry; DVC keeps `meta` when it re-adds a folder
DEFAULT_N, DEFAULT_SEED, DEFAULT_TEST_FRACTION = 6000, 0, 0.1  # `facekp data synth` with no flags
EXTRA_FILES = 3  # train/gt.csv, test/gt.csv, synth.json beside the n images
REBUILT_RECORD = "facekp-rebuilt.json"  # in .dvc/tmp: the md5s this clone rebuilt and verified


@dataclass(frozen=True)
class SynthRecipe:
    n: int
    seed: int
    test_fraction: float
    source: str  # where the recipe came from, for messages
    generator_version: str | None = None  # as recorded; None when the .dvc file does not say

    def describe(self) -> str:
        return f"{self.n} images, seed {self.seed}, test fraction {self.test_fraction:g}"


@dataclass(frozen=True)
class RebuildResult:
    recipe: SynthRecipe
    generator_version: str
    md5: str
    seconds: float


def read_recipe(dvc_file: Path) -> SynthRecipe | None:
    """The synthetic recipe the .dvc file names, or None when it does not name one."""
    from dvc.utils.serialize import load_yaml

    try:
        document = load_yaml(str(dvc_file)) or {}
    except Exception:  # read_version reports an unreadable file with its own message
        return None
    recipe = (document.get("meta") or {}).get(META_KEY)
    if isinstance(recipe, dict):
        try:
            return SynthRecipe(
                int(recipe["n"]),
                int(recipe.get("seed", DEFAULT_SEED)),
                float(recipe.get("test_fraction", DEFAULT_TEST_FRACTION)),
                f"meta.{META_KEY} in {dvc_file}",
                str(recipe["version"]) if recipe.get("version") is not None else None,
            )
        except (KeyError, TypeError, ValueError):
            return None
    outs = document.get("outs") or [{}]
    if outs[0].get("nfiles") == DEFAULT_N + EXTRA_FILES:
        return SynthRecipe(DEFAULT_N, DEFAULT_SEED, DEFAULT_TEST_FRACTION, "the default set's file count")
    return None


def recipe_meta(data_dir: Path) -> dict | None:
    """The `meta.facekp_synth` entry for a dataset folder made by `facekp data synth`, else None."""
    from facekp_cli.data.synth.generator import META_FILE

    try:
        meta = json.loads((Path(data_dir) / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("generator") != "facekp-synth":
        return None
    keys = ("version", "n", "seed", "test_fraction")
    return {key: meta[key] for key in keys if key in meta}


def write_recipe(dvc_file: Path, recipe: dict | None) -> None:
    """Record (or, for a non-synthetic set, drop) the recipe in the .dvc file's `meta`."""
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(str(dvc_file)) as document:
        meta = dict(document.get("meta") or {})
        if recipe is None:
            meta.pop(META_KEY, None)
        else:
            meta[META_KEY] = recipe
        if meta:
            document["meta"] = meta
        else:
            document.pop("meta", None)


def directory_md5(repo, path: Path) -> str:
    """DVC's own hash of a folder (`<md5>.dir`), computed without touching the cache."""
    from dvc.fs import LocalFileSystem
    from dvc_data.hashfile.build import build

    _, _, obj = build(
        repo.cache.local, str(path), LocalFileSystem(), "md5", ignore=repo.dvcignore, dry_run=True
    )
    return obj.hash_info.value


def rebuild(repo, data_dir: Path, expected_md5: str, recipe: SynthRecipe, force: bool) -> RebuildResult:
    """Generate the recipe beside data_dir, check its hash, then move it into place and cache it.

    A mismatch leaves data_dir as it was and raises DataError with both hashes.
    """
    from facekp_cli.data.synth.generator import GENERATOR_VERSION, synthesize

    data_dir = Path(data_dir)
    if recipe.generator_version not in (None, GENERATOR_VERSION):
        raise DataError(
            f"{data_dir}: the version in {recipe.source} was made by generator v{recipe.generator_version}, "
            f"this facekp has v{GENERATOR_VERSION}, so it cannot be rebuilt here; pull it from a remote "
            f"that holds it, or make and push a new set (`facekp data synth`, `facekp data push`)"
        )
    if data_dir.exists() and any(data_dir.iterdir()) and not force:
        raise DataError(f"{data_dir}: exists and differs from the version to rebuild; use --force")
    started = time.perf_counter()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.rebuild.", dir=data_dir.parent))
    try:
        built = scratch / data_dir.name
        synthesize(built, recipe.n, seed=recipe.seed, test_fraction=recipe.test_fraction)
        md5 = directory_md5(repo, built)
        if md5 != expected_md5:
            raise DataError(
                f"{data_dir}: rebuilding it with the generator (v{GENERATOR_VERSION}, {recipe.describe()}, "
                f"from {recipe.source}) gives md5 {md5}, not {expected_md5} as recorded; that version "
                f"was made otherwise (another generator version or real data), so it must come from a "
                f"remote that holds it"
            )
        if data_dir.exists():
            shutil.rmtree(data_dir)
        os.replace(built, data_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return RebuildResult(recipe, GENERATOR_VERSION, md5, time.perf_counter() - started)


def _record_path(repo) -> Path:
    return Path(repo.tmp_dir) / REBUILT_RECORD


def record_rebuilt(repo, md5: str) -> None:
    """Remember that this clone rebuilt and verified `md5`, so status can call it recoverable."""
    path = _record_path(repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    known = sorted(set(rebuilt_versions(repo)) | {md5})
    path.write_text(json.dumps({"verified_md5": known}, indent=2) + "\n", encoding="utf-8")


def rebuilt_versions(repo) -> list[str]:
    try:
        return list(json.loads(_record_path(repo).read_text(encoding="utf-8"))["verified_md5"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
