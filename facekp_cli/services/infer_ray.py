"""`facekp infer --engine ray`: the same model, decoding and entries as `facekp infer`, on Ray Data.

The pipeline is Ray's own: a dataset of file paths (`ray.data.from_items` for local files, the
listing of an `s3://` prefix read by `ray.data.read_binary_files`), decoding and preprocessing in
Ray tasks (`map_batches` with a function), the model in a pool of actors (`map_batches` with a
class: each loads the model once), and the shards written by a `Datasink` (`write_datasink`).
Scheduling, back-pressure and retries (a killed actor is restarted and its batch re-run) are
Ray's. What is facekp's: the Predictor, `decode_for_prediction` and `predict_decoded` (the same
code the local engine runs, so the same numbers), the entries of predictions files, and the shard
files: each written atomically, so a killed job leaves only whole shards and `--resume` skips
every file they hold. A manifest (manifest.json) lists the shards once the job completes.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facekp_cli.errors import UsageError
from facekp_cli.model.resolve import resolve
from facekp_cli.services.infer import FailedImage, predictions_header
from facekp_cli.settings import Settings

FORMATS = ("jsonl", "parquet")
MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "facekp.predictions.manifest"
SHARD_PREFIX = "part-"
DECODE_BATCH = 16  # files per decoding task call: enough to amortise a task, small enough to spread
# Logical CPUs Ray reserves for each decoding, reading or writing task: a fraction, so that a model
# pool holding most CPUs never leaves them unschedulable (a whole-CPU reservation deadlocked a
# 2-CPU cluster with two 1-CPU model actors).
TASK_CPUS = 0.25
LIST_SUFFIXES = (".txt", ".lst")  # a file list: one image path or s3:// URI per line


@dataclass(frozen=True)
class RayInferResult:
    out: Path
    format: str
    images: int  # predicted by this run
    failed: tuple[FailedImage, ...]
    already_done: int  # --resume: files found in earlier shards and skipped
    shards: tuple[str, ...]  # every shard in the folder (earlier runs' too), as in the manifest
    seconds: float
    manifest: Path
    address: str
    pool_size: int
    faces: int | None = None
    model: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def partial(self) -> bool:
        return bool(self.failed)


# --- what runs in Ray workers (module-level, so it pickles by reference) ---


def _decode_batch(batch: dict, job, filesystem) -> dict:
    """Ray task: file paths (or bytes already read) -> `Decoded` (network-sized pixels), carried to
    the model actors by Ray's own object serialisation (no loader of facekp's own)."""
    import numpy as np

    from facekp_cli.predict.decoding import decode_for_prediction
    from facekp_cli.predict.sources import ImageSource

    paths, names = batch["path"], batch["name"]
    datas = batch.get("bytes")
    out = []
    for index, (path, name) in enumerate(zip(paths, names, strict=True)):
        path, name = str(path), str(name)
        data = bytes(datas[index]) if datas is not None else None
        if data is None and filesystem is not None:  # object storage, listed but not read yet
            data = _read_object(filesystem, path)
            if isinstance(data, str):
                out.append(_failed(path, name, data))
                continue
        source = ImageSource(path, name)  # a str path: an s3:// URI must not become a Path
        out.append(decode_for_prediction(source, job, data))
    decoded = np.empty(len(out), object)  # 1-D of objects, never numpy's guess at a 2-D array
    decoded[:] = out
    return {"path": np.asarray(paths, object), "name": np.asarray(names, object), "decoded": decoded}


def _read_object(filesystem, uri: str) -> bytes | str:
    try:
        with filesystem.open_input_stream(uri.removeprefix("s3://")) as stream:
            return stream.read()
    except OSError as exc:
        return f"{uri}: cannot read ({exc})"


def _failed(path: str, name: str, error: str):
    from facekp_cli.predict.decoding import Decoded
    from facekp_cli.predict.sources import ImageSource

    return Decoded(ImageSource(path, name), error=error)


class _ModelActor:
    """Ray actor: loads the model once (from bytes shipped through Ray's object store, so workers on
    other machines need no shared disk) and predicts batches of decoded files."""

    def __init__(self, model_bytes, suffix: str, kind: str, device: str, detect: bool, fmt: str) -> None:
        import tempfile

        import ray

        from facekp_cli.predict.backends import open_predictor

        if isinstance(model_bytes, ray.ObjectRef):
            model_bytes = ray.get(model_bytes)
        folder = tempfile.mkdtemp(prefix="facekp-ray-model-")
        path = Path(folder) / f"model{suffix}"
        path.write_bytes(model_bytes)
        if kind == "checkpoint":
            self.predictor = open_predictor(ckpt=path, device=device)
        else:
            self.predictor = open_predictor(model=path, device=device)
        import shutil

        shutil.rmtree(folder, ignore_errors=True)  # loaded into memory; the copy is not needed
        self.detect, self.fmt = detect, fmt
        self.names = self.predictor.meta.keypoint_names

    def __call__(self, batch: dict) -> dict:
        from facekp_cli.predict.output import image_entry
        from facekp_cli.predict.stream import predict_decoded

        decoded = list(batch["decoded"])
        results = predict_decoded(self.predictor, decoded)
        return _rows([image_entry(result, self.names) for result in results], self.names, self.fmt)


def _rows(entries: list[dict], names: tuple[str, ...], fmt: str):
    """A typed table for the shard writer: the entry itself (JSON Lines) or flat columns (Parquet).
    Typed, so that a batch without a failure (an all-null `error`) still joins one with failures."""
    import pyarrow as pa

    columns = _columns(entries, names, fmt)
    types = {"path": pa.string(), "name": pa.string(), "error": pa.string(), "entry": pa.string()}
    types.update(faces=pa.string(), faces_found=pa.int32(), width=pa.int64(), height=pa.int64())
    return pa.table({k: pa.array(v, type=types.get(k, pa.float64())) for k, v in columns.items()})


def _columns(entries: list[dict], names: tuple[str, ...], fmt: str) -> dict:
    rows: dict[str, list] = {
        "path": [e["path"] for e in entries],
        "name": [e["name"] for e in entries],
        "error": [e.get("error") for e in entries],
        "faces_found": [len(e["faces"]) if "faces" in e else -1 for e in entries],
    }
    if fmt == "jsonl":
        rows["entry"] = [json.dumps(e) for e in entries]
        return rows
    nan = float("nan")
    rows["width"] = [e.get("width", 0) for e in entries]
    rows["height"] = [e.get("height", 0) for e in entries]
    for name in names:
        for axis in ("x", "y"):
            rows[f"{name}_{axis}"] = [e["points"][name][axis] if "points" in e else nan for e in entries]
    rows["faces"] = [json.dumps(e["faces"]) if "faces" in e else None for e in entries]
    return rows


def _shard_sink(out: Path, fmt: str, header: dict[str, Any], run_id: str):
    """A Ray Datasink writing each write task's rows as one shard, atomically (temporary + rename)."""
    from ray.data import Datasink
    from ray.data.block import BlockAccessor

    class ShardDatasink(Datasink):
        def __init__(self) -> None:
            self.written: list[dict] = []

        def get_name(self) -> str:
            return "FacekpShards"

        def write(self, blocks, ctx) -> dict | None:
            import pyarrow as pa

            tables = [BlockAccessor.for_block(block).to_arrow() for block in blocks]
            tables = [t for t in tables if t.num_rows]
            if not tables:
                return None
            table = pa.concat_tables(tables, promote_options="permissive")
            name = f"{SHARD_PREFIX}{run_id}-{ctx.task_idx:05d}.{fmt}"
            _write_shard(out / name, fmt, table, header)
            errors = table.column("error").to_pylist()
            paths = table.column("path").to_pylist()
            faces = [n for n in table.column("faces_found").to_pylist() if n >= 0]
            return {
                "file": name,
                "images": table.num_rows,
                "failed": [(p, e) for p, e in zip(paths, errors, strict=True) if e],
                "faces": sum(faces),
            }

        def on_write_complete(self, write_result) -> None:
            self.written = [r for r in write_result.write_returns if r]

    return ShardDatasink()


def _write_shard(path: Path, fmt: str, table, header: dict[str, Any]) -> None:
    from facekp_cli.atomic import atomic_path
    from facekp_cli.predict.output import JSONL_SCHEMA_NAME, SCHEMA_VERSION

    with atomic_path(path) as tmp:
        if fmt == "jsonl":  # a whole facekp JSON Lines predictions file: header, entries, summary
            errors = table.column("error").to_pylist()
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(
                    json.dumps({"schema": JSONL_SCHEMA_NAME, "schema_version": SCHEMA_VERSION, **header})
                )
                fh.write("\n")
                for line in table.column("entry").to_pylist():
                    fh.write(line + "\n")
                summary = {"images": table.num_rows, "failed": sum(1 for e in errors if e)}
                fh.write(json.dumps({"summary": summary}) + "\n")
        else:
            import pyarrow.parquet as pq

            table = table.drop_columns(["faces_found"])
            if header["detect"] is False:  # face crops only: no nested faces
                table = table.drop_columns(["faces"])
            meta = {b"facekp": json.dumps({"schema": MANIFEST_SCHEMA + ".parquet", **header}).encode()}
            pq.write_table(table.replace_schema_metadata(meta), tmp)


# --- the driver ---


def _connect(settings: Settings, address: str | None):
    """Connect to RAY_ADDRESS / --ray-address / ray.address, else start a local cluster.
    Returns (address, started): a cluster this run started is shut down at the end."""
    import logging

    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is in the lock
        raise UsageError("--engine ray needs the 'ray' package: pip install 'ray[data]'") from exc
    if ray.is_initialized():
        return ray.get_runtime_context().gcs_address, False
    address = address or settings.ray.address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address is None:
        kwargs["num_cpus"] = settings.ray.num_cpus or None
    try:
        ray.init(address=address, **kwargs)
    except Exception as exc:  # ray raises plain Exception too (a local node that did not start)
        from facekp_cli.errors import ExternalServiceError

        where = f"Ray cluster {address}" if address else "a local Ray cluster"
        raise ExternalServiceError(f"{where}: cannot start or connect ({exc})") from exc
    return address or ray.get_runtime_context().gcs_address, True


def _expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """A .txt/.lst file list becomes its lines (blank lines and # comments skipped)."""
    out: list[str] = []
    for item in inputs:
        text = os.fspath(item)
        if not text.startswith("s3://") and text.lower().endswith(LIST_SUFFIXES) and Path(text).is_file():
            for line in Path(text).read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append(line)
        else:
            out.append(text)
    return out


def s3_filesystem():
    """pyarrow's S3 client from the standard AWS environment (AWS_ENDPOINT_URL for S3-compatible
    stores such as MinIO or moto); shipped to Ray tasks with its options."""
    from pyarrow import fs

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, Any] = {"region": os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        options.update(endpoint_override=host or endpoint, scheme=scheme if host else "https")
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        options.update(
            access_key=os.environ["AWS_ACCESS_KEY_ID"],
            secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
            session_token=os.environ.get("AWS_SESSION_TOKEN"),
        )
    return fs.S3FileSystem(**{k: v for k, v in options.items() if v is not None})


def _list_s3(filesystem, prefix: str, recursive: bool) -> list[tuple[str, str]]:
    """(uri, name) for the image objects under an s3:// prefix, names relative to it, sorted."""
    from pyarrow import fs

    from facekp_cli.media import IMAGE_EXTENSIONS

    base = prefix.removeprefix("s3://").rstrip("/")
    try:
        infos = filesystem.get_file_info(fs.FileSelector(base, recursive=recursive))
    except OSError as exc:
        from facekp_cli.errors import ExternalServiceError

        raise ExternalServiceError(f"{prefix}: cannot list ({exc})") from exc
    found = []
    for info in infos:
        if info.type == fs.FileType.File and info.path.lower().endswith(tuple(IMAGE_EXTENSIONS)):
            found.append((f"s3://{info.path}", info.path[len(base) + 1 :]))
    return sorted(found)


def _sources(inputs: list[str], recursive: bool, filesystem) -> list[tuple[str, str]]:
    from facekp_cli.media import IMAGE_EXTENSIONS
    from facekp_cli.predict.sources import find_images

    remote = [i for i in inputs if i.startswith("s3://")]
    local = [i for i in inputs if not i.startswith("s3://")]
    found: list[tuple[str, str]] = []
    for prefix in remote:
        if Path(prefix).suffix.lower() in IMAGE_EXTENSIONS:
            found.append((prefix, prefix.rsplit("/", 1)[-1]))  # one object
            continue
        listed = _list_s3(filesystem, prefix, recursive=True)
        if not listed:
            raise UsageError(f"{prefix}: no image objects under this prefix")
        found += listed
    if local:
        found += [(str(s.path), s.name) for s in find_images(local, recursive=recursive)]
    return found


def _earlier_shards(out: Path, fmt: str, header: dict[str, Any]) -> tuple[list[str], set[str]]:
    """Whole shards an earlier run left in `out` (written atomically: no torn ones) and their paths."""
    from facekp_cli.services.infer import _check_same_output

    shards = sorted(p for p in out.glob(f"{SHARD_PREFIX}*.{fmt}") if p.is_file())
    done: set[str] = set()
    for shard in shards:
        if fmt == "jsonl":
            from facekp_cli.predict.output import read_streamed_state

            state = read_streamed_state(shard, "jsonl")
            if state.header is not None:
                _check_same_output(shard, "jsonl", state.header, header, tuple(header["keypoint_names"]))
            done |= set(state.done)
        else:
            import pyarrow.parquet as pq

            found = json.loads((pq.read_schema(shard).metadata or {}).get(b"facekp", b"{}"))
            _check_same_output(shard, "jsonl", found, header, tuple(header["keypoint_names"]))
            done |= set(pq.read_table(shard, columns=["path"]).column("path").to_pylist())
    return [p.name for p in shards], done


def _check_out(out: Path, resume: bool) -> None:
    """--out is a folder facekp owns: new, empty, or (with --resume) holding an earlier run's shards."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: --engine ray writes a folder of shards; this is a file (use a folder)")
    if not out.is_dir():
        return
    entries = [p for p in out.iterdir() if not p.name.startswith(".")]
    ours = [p for p in entries if p.name == MANIFEST or p.name.startswith(SHARD_PREFIX)]
    if len(ours) != len(entries):
        raise UsageError(f"{out}: not empty and not a facekp shard folder; use a new --out")
    if ours and not resume:
        raise UsageError(
            f"{out}: holds shards of an earlier run; add --resume to continue it, or use a new --out"
        )


def run(
    settings: Settings,
    inputs: Sequence[str | os.PathLike[str]],
    out: Path,
    *,
    ckpt: Path | None = None,
    model: Path | None = None,
    fmt: str | None = None,
    resume: bool = False,
    address: str | None = None,
    on_start: Callable[[int], None] | None = None,
    progress_bars: bool = True,
) -> RayInferResult:
    """Predict every image on a Ray cluster into `out/part-*.{jsonl,parquet}` + `out/manifest.json`.

    Everything that can fail before predicting (model, inputs, output folder) fails before Ray starts.
    progress_bars: Ray Data's own bars (a terminal); off for logs and --quiet.
    """
    from facekp_cli.atomic import remove_stale_temporaries, write_text_atomic
    from facekp_cli.predict.backends import open_predictor

    cfg, rcfg = settings.infer, settings.ray
    out = Path(out)
    fmt = fmt or rcfg.format
    if fmt not in FORMATS:
        raise UsageError(f"--engine ray writes jsonl or parquet shards, not '{fmt}'")
    if fmt == "parquet" and cfg.detect is not False:
        raise UsageError(
            "--engine ray with parquet shards takes face crops only (--no-detect): a photo's faces are "
            "nested, which jsonl shards hold"
        )
    _check_out(out, resume)
    choice = resolve(settings, ckpt, model, device=cfg.device)
    ckpt, model = choice.ckpt, choice.model
    predictor = open_predictor(ckpt, model, cfg.device)  # fails here, not in a worker, on a bad model
    header = predictions_header(settings, predictor)
    expanded = _expand_inputs(inputs)
    filesystem = s3_filesystem() if any(i.startswith("s3://") for i in expanded) else None
    sources = _sources(expanded, cfg.recursive, filesystem)
    earlier, done = _earlier_shards(out, fmt, header) if out.is_dir() else ([], set())
    todo = [(path, name) for path, name in sources if path not in done]
    import ray

    connected, started_here = _connect(settings, address)
    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.glob(f".{SHARD_PREFIX}*.tmp"):  # what a killed job's shard writers left
        target = re.match(rf"^\.({SHARD_PREFIX}.+?\.(?:jsonl|parquet))\.\d+\.", leftover.name)
        if target:
            remove_stale_temporaries(out / target.group(1))
    remove_stale_temporaries(out / MANIFEST)
    try:
        if on_start is not None:
            on_start(len(todo))
        started = time.perf_counter()
        written: list[dict] = []
        if todo:
            written = _run_pipeline(
                settings, todo, out, fmt, header, predictor, Path(ckpt or model), filesystem, progress_bars
            )
        seconds = time.perf_counter() - started
    finally:
        if started_here:
            ray.shutdown()
    failed = [FailedImage(p, e) for w in written for p, e in w["failed"]]
    shards = tuple(sorted({*earlier, *(w["file"] for w in written)}))
    images = sum(w["images"] for w in written)
    if images < len(todo):  # never silent: what the cluster lost is reported, and --resume redoes it
        _, present = _earlier_shards(out, fmt, header)
        for path, _name in todo:
            if path not in present:
                failed.append(
                    FailedImage(
                        path, f"{path}: lost by the Ray job (no result came back); rerun with --resume"
                    )
                )
        images = len(todo)
    failed = tuple(failed)
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "schema_version": 1,
        **header,
        "format": fmt,
        "shards": list(shards),
        "summary": {
            "images": images,
            "failed": len(failed),
            "already_done": len(sources) - len(todo),
            "seconds": round(seconds, 3),
            **({"faces": sum(w["faces"] for w in written)} if cfg.detect is not False else {}),
        },
        "failed": [{"path": f.path, "error": f.error} for f in failed],
        "ray": {"address": connected, "pool_size": rcfg.pool_size, "gpus_per_actor": rcfg.gpus_per_actor},
    }
    manifest_path = write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return RayInferResult(
        out, fmt, images, failed, len(sources) - len(todo), shards, seconds, Path(manifest_path),
        str(connected), rcfg.pool_size, sum(w["faces"] for w in written) if cfg.detect is not False else None,
        predictor.provenance(),
    )  # fmt: skip


def _run_pipeline(
    settings, todo, out, fmt, header, predictor, model_path: Path, filesystem, progress_bars: bool
) -> list[dict]:
    import logging
    import warnings

    import ray
    from ray.data import ActorPoolStrategy, DataContext

    from facekp_cli.predict.decoding import DecodeJob
    from facekp_cli.predict.detect import resolve_finder

    cfg, rcfg = settings.infer, settings.ray
    _check_capacity(rcfg)
    mean_shape = predictor.meta.mean_shape
    job = DecodeJob(
        predictor.meta.preprocessing.input_size,
        cfg.detect,
        tuple(tuple(p) for p in mean_shape) if mean_shape is not None else None,
        finder=resolve_finder(cfg.finder) if cfg.detect is not False else cfg.finder,
        min_score=cfg.min_face_score,
    )
    context = DataContext.get_current()
    context.enable_progress_bars = progress_bars
    # Ray Data's INFO lines (execution plans, log folders) and its note that a short job cannot use
    # every actor are not the user's business; its warnings and errors still show.
    if not logging.getLogger("facekp_cli").isEnabledFor(logging.DEBUG):  # facekp -v shows them
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", message=".*minimum number of concurrent actors.*")
    if filesystem is not None and all(path.startswith("s3://") for path, _ in todo):
        # Ray's own reader: listing done above, the objects are read in Ray tasks.
        names = dict(todo)
        dataset = ray.data.read_binary_files(
            [p.removeprefix("s3://") for p, _ in todo],
            include_paths=True,
            filesystem=filesystem,
            num_cpus=TASK_CPUS,
        )
        dataset = dataset.map_batches(
            _name_objects,
            fn_kwargs={"names": names},
            batch_size=DECODE_BATCH,
            batch_format="numpy",
            num_cpus=TASK_CPUS,
        )
    else:
        dataset = ray.data.from_items([{"path": path, "name": name} for path, name in todo])
    dataset = dataset.map_batches(
        _decode_batch,
        fn_kwargs={"job": job, "filesystem": filesystem},
        batch_size=DECODE_BATCH,
        batch_format="numpy",
        num_cpus=TASK_CPUS,
    )
    model_ref = ray.put(model_path.read_bytes())
    dataset = dataset.map_batches(
        _ModelActor,
        fn_constructor_kwargs={
            "model_bytes": model_ref,
            "suffix": model_path.suffix,
            "kind": predictor.kind,
            "device": cfg.device,
            "detect": cfg.detect,
            "fmt": fmt,
        },
        batch_size=cfg.batch_size,
        batch_format="numpy",
        # Ray Data restarts a dead actor and re-runs its batches (max_restarts and max_task_retries
        # default to -1 for actor pools): retries are Ray's, not ours.
        compute=ActorPoolStrategy(size=rcfg.pool_size),
        num_cpus=rcfg.cpus_per_actor,
        num_gpus=rcfg.gpus_per_actor or None,
    )
    sink = _shard_sink(out, fmt, header, uuid.uuid4().hex[:8])
    dataset.write_datasink(sink, ray_remote_args={"num_cpus": TASK_CPUS})
    return sink.written


def _check_capacity(rcfg) -> None:
    """A model pool that takes every CPU leaves none for decoding: Ray would wait forever."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 0.0)
    wanted = rcfg.pool_size * rcfg.cpus_per_actor
    if rcfg.gpus_per_actor == 0 and wanted > cpus - TASK_CPUS:
        raise UsageError(
            f"ray.pool_size {rcfg.pool_size} x ray.cpus_per_actor {rcfg.cpus_per_actor} = {wanted:g} CPUs, "
            f"but the Ray cluster has {cpus:g}: nothing would be left for decoding; lower one of them "
            f"(e.g. --set ray.cpus_per_actor={max(0.25, (cpus - 0.5) / rcfg.pool_size):g})"
        )


def _name_objects(batch: dict, names: dict[str, str]) -> dict:
    """read_binary_files gives 'bucket/key'; entries carry the s3:// URI and the name under the prefix."""
    import numpy as np

    paths = [f"s3://{p}" for p in batch["path"]]
    return {
        "path": np.asarray(paths, object),
        "name": np.asarray([names[p] for p in paths], object),
        "bytes": batch["bytes"],
    }
