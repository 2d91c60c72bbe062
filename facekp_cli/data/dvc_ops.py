"""Dataset versioning through DVC's Python API: add + push, pull, and a three-way status.

facekp never copies data itself: it asks DVC. `data.remote` is either the name of a remote in
.dvc/config or a URL / local path; a URL becomes an in-memory remote named `facekp` (nothing is
written to .dvc/config), with the S3 endpoint taken from AWS_ENDPOINT_URL(_S3) when set, so
`FACEKP_DATA__REMOTE=s3://bucket/path` works against any S3-compatible server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from facekp_cli.data.synth.rebuild import RebuildResult
from facekp_cli.errors import DataError, ExternalServiceError, UsageError

URL_REMOTE = "facekp"  # the name given to a data.remote URL inside DVC (in memory only)
_SYNTH_HINT = "for the embedded default dataset run `facekp data synth` (then `facekp data push`)"
_REMOTE_HOWTO = (
    "configure one that holds it: `dvc remote add -d NAME s3://bucket/path` (or ssh://host/path, "
    "or a local folder), or set data.remote / FACEKP_DATA__REMOTE to a remote name or URL; "
    "see docs/MLOPS.md 'Data remotes'"
)


@dataclass(frozen=True)
class DataVersion:
    dvc_file: Path
    md5: str | None
    files: int | None
    size: int | None


@dataclass(frozen=True)
class TransferResult:
    action: str  # "push" or "pull"
    data_dir: Path
    version: DataVersion
    remote: str  # a readable description: name (url)
    transferred: int
    seconds: float
    rebuilt: RebuildResult | None = None  # set when the remote lacked the version and it was regenerated


@dataclass(frozen=True)
class DataStatus:
    data_dir: Path
    dvc_file: Path
    remote: str
    workspace: str  # "in sync", "modified", "missing", "untracked", "no data"
    remote_state: str  # "in sync", "rebuildable", "not pushed", "incomplete", "unreachable", "unknown"
    details: tuple[str, ...]
    version: DataVersion | None

    @property
    def in_sync(self) -> bool:
        # "rebuildable": the remote lacks it, but this clone regenerated it and checked its hash
        return self.workspace == "in sync" and self.remote_state in ("in sync", "rebuildable")

    def to_dict(self) -> dict:
        return {
            "data_dir": str(self.data_dir),
            "dvc_file": str(self.dvc_file),
            "remote": self.remote,
            "workspace": self.workspace,
            "remote_state": self.remote_state,
            "in_sync": self.in_sync,
            "details": list(self.details),
            "version": None
            if self.version is None
            else {"md5": self.version.md5, "files": self.version.files, "size": self.version.size},
        }


def dvc_file_for(data_dir: Path) -> Path:
    return data_dir.with_name(data_dir.name + ".dvc")


def _is_url_or_path(remote: str) -> bool:
    return "://" in remote or remote.startswith((".", "/", "~")) or os.sep in remote


def _remote_overrides(remote: str | None) -> tuple[str | None, dict | None]:
    """(remote name to use, config merged into DVC's in memory)."""
    if remote is None or not _is_url_or_path(remote):
        return remote, None
    if "://" not in remote:
        remote = str(Path(remote).expanduser().resolve())
    options: dict[str, str] = {"url": remote}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if remote.startswith("s3://") and endpoint:
        options["endpointurl"] = endpoint
    return URL_REMOTE, {"remote": {URL_REMOTE: options}}


@contextmanager
def open_repo(data_dir: Path, remote: str | None):
    """The DVC repo containing data_dir, with data.remote resolved; yields (repo, remote name)."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    # DVC's git hints ("To track the changes with git...") are noise here; -v shows them.
    verbose = logging.getLogger("facekp_cli").isEnabledFor(logging.DEBUG)
    logging.getLogger("dvc").setLevel(logging.DEBUG if verbose else logging.WARNING)
    # S3 clients announce where they found credentials at INFO; not a line for the user.
    for name in ("aiobotocore", "botocore", "s3fs"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    start = data_dir.resolve().parent
    try:
        root = Repo.find_root(str(start))
    except NotDvcRepoError:
        raise UsageError(
            f"{data_dir}: not inside a DVC repository "
            f"(run facekp from the project folder, or `git init && dvc init`)"
        ) from None
    name, config = _remote_overrides(remote)
    repo = Repo(root, config=config)
    try:
        remotes = repo.config.get("remote", {})
        name = name or repo.config["core"].get("remote")
        if not name:
            raise UsageError(
                "no DVC remote: set data.remote (a remote name or URL, "
                "e.g. FACEKP_DATA__REMOTE=s3://bucket/path) "
                "or add a default with `dvc remote add -d NAME URL`"
            )
        if name not in remotes:
            known = ", ".join(sorted(remotes)) or "none"
            raise UsageError(f"DVC remote '{name}' is not configured (known remotes: {known})")
        yield repo, name
    finally:
        repo.close()


def _describe(repo, name: str) -> str:
    return f"{name} ({repo.config['remote'][name].get('url', '?')})"


def read_version(dvc_file: Path) -> DataVersion:
    from dvc.utils.serialize import load_yaml

    try:
        outs = (load_yaml(str(dvc_file)) or {}).get("outs") or [{}]
    except Exception as exc:  # a hand-edited or merge-conflicted .dvc file
        raise DataError(f"{dvc_file}: cannot read DVC file ({exc})") from exc
    out = outs[0]
    return DataVersion(dvc_file, out.get("md5"), out.get("nfiles"), out.get("size"))


def push(data_dir: Path, remote: str | None) -> TransferResult:
    """dvc add + dvc push of the dataset folder."""
    from dvc.exceptions import DvcException

    data_dir = Path(data_dir)
    if not (data_dir / "train").is_dir() and not (data_dir / "test").is_dir():
        raise DataError(f"{data_dir}: no dataset to push ({_SYNTH_HINT})")
    started = time.perf_counter()
    with open_repo(data_dir, remote) as (repo, name):
        try:
            repo.add([str(data_dir)])
        except DvcException as exc:
            raise DataError(f"{data_dir}: dvc add failed ({exc})") from exc
        dvc_file = dvc_file_for(data_dir)
        from facekp_cli.data.synth.rebuild import recipe_meta, write_recipe

        # so that a clone without this remote can regenerate it (`facekp data pull`)
        write_recipe(dvc_file, recipe_meta(data_dir))
        try:
            with _quiet_dvc_log():  # a dying remote makes DVC log a traceback per file; we say it once
                count = repo.push([str(dvc_file)], remote=name)
        except Exception as exc:  # DVC errors and the storage client's own (botocore, OSError...)
            raise _remote_error("push to", repo, name, exc) from exc
        return TransferResult(
            "push",
            data_dir,
            read_version(dvc_file),
            _describe(repo, name),
            int(count or 0),
            time.perf_counter() - started,
        )


def pull(data_dir: Path, remote: str | None, force: bool = False) -> TransferResult:
    """dvc pull of the version recorded in <data_dir>.dvc."""
    from dvc.exceptions import CheckoutError, ConfirmRemoveError

    data_dir = Path(data_dir)
    dvc_file = dvc_file_for(data_dir)
    if not dvc_file.is_file():
        raise DataError(f"{dvc_file}: no DVC file, so no dataset version to pull ({_SYNTH_HINT})")
    started = time.perf_counter()
    with open_repo(data_dir, remote) as (repo, name), _quiet_missing_objects():
        try:
            stats = repo.pull([str(dvc_file)], remote=name, force=force)
        except ConfirmRemoveError as exc:
            raise DataError(f"{data_dir}: has local changes that pull would overwrite; use --force") from exc
        except CheckoutError:
            version = read_version(dvc_file)
            rebuilt = _rebuild_missing(repo, name, data_dir, dvc_file, version, force)
            return TransferResult(
                "pull", data_dir, version, _describe(repo, name), 0, time.perf_counter() - started, rebuilt
            )
        except Exception as exc:  # DVC errors and the storage client's own
            raise _remote_error("pull from", repo, name, exc) from exc
        transferred = int((stats or {}).get("stats", {}).get("fetched", 0))
        return TransferResult(
            "pull",
            data_dir,
            read_version(dvc_file),
            _describe(repo, name),
            transferred,
            time.perf_counter() - started,
        )


@contextmanager
def _quiet_missing_objects():
    """DVC logs a missing version twice as warnings; facekp either rebuilds it or says so in one line."""
    if logging.getLogger("facekp_cli").isEnabledFor(logging.DEBUG):
        yield
        return
    loggers = [logging.getLogger(name) for name in ("dvc", "dvc_data")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _rebuild_missing(
    repo, name: str, data_dir: Path, dvc_file: Path, version: DataVersion, force: bool
) -> RebuildResult:
    """The remote lacks the version: regenerate it when the .dvc file names a synthetic recipe."""
    from facekp_cli.data.synth import rebuild

    recipe = rebuild.read_recipe(dvc_file)
    if recipe is None or not version.md5:
        raise DataError(
            f"{data_dir}: remote {_describe(repo, name)} does not hold the version in {dvc_file} "
            f"({version.md5}), which is not the embedded synthetic set; {_REMOTE_HOWTO}"
        )
    result = rebuild.rebuild(repo, data_dir, version.md5, recipe, force)
    # Into the cache, so the workspace matches the .dvc file and `facekp data push` can upload it.
    repo.commit(str(dvc_file), force=True)
    rebuild.record_rebuilt(repo, version.md5)
    return result


def status(data_dir: Path, remote: str | None) -> DataStatus:
    """Do the workspace, the .dvc file and the remote agree?"""

    data_dir = Path(data_dir)
    dvc_file = dvc_file_for(data_dir)
    with open_repo(data_dir, remote) as (repo, name):
        where = _describe(repo, name)
        if not dvc_file.is_file():
            workspace = "untracked" if data_dir.exists() else "no data"
            return DataStatus(
                data_dir,
                dvc_file,
                where,
                workspace,
                "unknown",
                (f"{dvc_file} does not exist: run `facekp data push` to version the dataset",),
                None,
            )
        version = read_version(dvc_file)
        details: list[str] = []
        if not data_dir.exists():
            workspace = "missing"
            details.append(f"{data_dir} is missing: run `facekp data pull`")
        else:
            local = repo.status([str(dvc_file)])
            workspace = "in sync" if not local else "modified"
            if local:
                details.append(
                    f"{data_dir} differs from {dvc_file}: `facekp data push` to record it, "
                    f"or `facekp data pull --force` to restore the recorded version"
                )
        try:
            cloud = repo.status([str(dvc_file)], cloud=True, remote=name)
        except Exception as exc:  # an unreachable remote is a state to report, not a crash
            return DataStatus(
                data_dir,
                dvc_file,
                where,
                workspace,
                "unreachable",
                (*details, f"remote {where}: {exc}"),
                version,
            )
        counts: dict[str, int] = {}
        for state in cloud.values():
            counts[state] = counts.get(state, 0) + 1
        # "deleted" means in the remote but not in the local cache: the remote still agrees.
        if not counts.get("new") and not counts.get("missing"):
            remote_state = "in sync"
        elif version.md5 and version.md5 in _rebuilt_here(repo):
            remote_state = "rebuildable"
            details.append(
                f"remote {where} does not hold it; this clone regenerated it and checked its md5, "
                f"and `facekp data pull` does so anywhere (`facekp data push` uploads it)"
            )
        elif counts.get("missing"):
            remote_state = "incomplete"
            details.append(f"{counts['missing']} object(s) are neither in the remote nor in the local cache")
        else:
            remote_state = "not pushed"
            details.append(
                f"{counts.get('new', 0)} object(s) are not in the remote yet: run `facekp data push`"
            )
        return DataStatus(data_dir, dvc_file, where, workspace, remote_state, tuple(details), version)


def _rebuilt_here(repo) -> list[str]:
    from facekp_cli.data.synth.rebuild import rebuilt_versions

    return rebuilt_versions(repo)


def _remote_error(verb: str, repo, name: str, exc: Exception) -> ExternalServiceError:
    return ExternalServiceError(
        f"cannot {verb} DVC remote {_describe(repo, name)}: {exc}",
        hint="check data.remote, credentials and network/endpoint (AWS_ENDPOINT_URL); " + _SYNTH_HINT,
    )


@contextlib.contextmanager
def _quiet_dvc_log():
    import logging

    loggers = [logging.getLogger(name) for name in ("dvc", "dvc_data", "dvc_objects")]
    levels = [log.level for log in loggers]
    if not logging.getLogger("facekp_cli").isEnabledFor(logging.DEBUG):  # -v keeps DVC's detail
        for log in loggers:
            log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)
