"""`facekp train`: fit the ResNet18 with Lightning; checkpoints, MLflow, resume and scale-out.

With `--strategy ddp` Lightning re-runs the whole command in one process per device, so this
function runs on every rank: everything that writes (checkpoints, MLflow, the stable copy) is
done by global rank 0 only, and the run folder is fixed by rank 0 and inherited through the
environment.
"""

from __future__ import annotations

import os
import signal
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L

from facekp_cli.atomic import atomic_path
from facekp_cli.errors import ExitCode, FacekpError, UsageError
from facekp_cli.settings import Settings

RUN_DIR_ENV = "_FACEKP_RUN_DIR"  # not FACEKP_*: the settings loader would reject it as a key
BEST_NAME, LAST_NAME = "best", "last"


class TrainingInterrupted(FacekpError):
    exit_code = ExitCode.INTERRUPTED


@dataclass(frozen=True)
class TrainResult:
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    run_dir: Path
    metrics: dict[str, float]  # validation metrics of the best checkpoint
    run_id: str | None
    epochs_completed: int
    stable_best_path: Path | None
    global_rank: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    best_epoch: int | None = None
    tracking_uri: str | None = None


def choose_run_dir(settings: Settings, resume_from: Path | None) -> Path:
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited:
        return Path(inherited)
    t = settings.train
    in_run_folder = resume_from is not None and resume_from.name in (f"{BEST_NAME}.ckpt", f"{LAST_NAME}.ckpt")
    if in_run_folder and resume_from.resolve() != t.best_path.resolve():
        return resume_from.parent  # continue in the run's own folder
    if t.run_name and resume_from is not None:
        return t.out_dir / t.run_name  # resuming into a named run: its last.ckpt is expected there
    from facekp_cli.run_folder import plan_run_folder

    return plan_run_folder(t.out_dir, t.run_name, time.strftime("%Y%m%d-%H%M%S"), last_name=LAST_NAME)


def check_output_folder(folder: Path, shown: Path) -> None:
    """Fail before training when a folder cannot be created because a file is in the way."""
    for ancestor in (folder, *folder.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise UsageError(f"{shown}: cannot write output ({ancestor} is a file, not a folder)")
            return


def check_outputs(settings: Settings, run_dir: Path) -> None:
    best = settings.train.best_path
    if best.is_dir():
        raise UsageError(f"{best}: cannot write output (train.best_path is a folder)")
    check_output_folder(best.parent, best)
    check_output_folder(run_dir, run_dir)
    if settings.tracking.enabled:
        from facekp_cli.experiments.client import resolve_uri, sqlite_store

        store = sqlite_store(resolve_uri(settings))
        if store is not None:
            check_output_folder(store.parent, store)


RESUMED_SECTIONS = ("model", "augment", "train")
RESUMED_DATA_KEYS = ("root", "val_fraction")  # which images train and which validate


def settings_for_resume(settings: Settings, saved: dict[str, Any], path: Path) -> Settings:
    """The run's own model/augment/train settings, except where this command sets them explicitly.

    `facekp train --resume last.ckpt` alone must continue the same run, not one with defaults.
    """
    merged = settings.to_dict()
    sources = settings.sources
    for section in RESUMED_SECTIONS:
        for key, value in saved.get(section, {}).items():
            if sources.get(f"{section}.{key}") == "default" and key != "resume":
                merged[section][key] = value
    for key in RESUMED_DATA_KEYS:  # the run's own data, not whatever faces_data is in this folder
        if key in saved.get("data", {}) and sources.get(f"data.{key}") == "default":
            merged["data"][key] = saved["data"][key]
    resumed = Settings(**merged)
    resumed._sources, resumed._config_path = sources, settings.config_path
    for key in ("input_size", "in_channels", "width"):
        if getattr(resumed.model, key) != saved.get("model", {}).get(key, getattr(resumed.model, key)):
            raise UsageError(
                f"{path}: was trained with model.{key}={saved['model'][key]}; a resumed run keeps it"
            )
    ran_for = saved.get("train", {}).get("epochs", resumed.train.epochs)
    if resumed.train.schedule == "onecycle" and resumed.train.epochs != ran_for:
        raise UsageError(
            f"{path}: its one-cycle schedule was built for {ran_for} epochs; resume with --epochs {ran_for} "
            f"(or start a new run)"
        )
    return resumed


def check_resumed_data(settings: Settings, meta, path: Path, datamodule=None) -> None:
    """A resumed run continues on the data it was trained on, or says why it cannot.

    Without datamodule: the recorded data folder must exist. With it (after setup): the split
    must be the one recorded, unless this command chose data.root itself.
    """
    from facekp_cli.provenance import split_fingerprint

    if settings.sources.get("data.root") != "default":
        return  # an explicit --set data.root / --data: the user chose other data on purpose
    root = settings.data.root
    fix = "restore it (facekp data pull, dvc checkout) or pass --set data.root=DIR to continue on other data"
    if datamodule is None:
        if not Path(root).exists():
            raise UsageError(f"{path}: was trained on {root}, which is not there now; {fix}")
        return
    if meta.data_fingerprint and split_fingerprint(datamodule.split) != meta.data_fingerprint:
        raise UsageError(
            f"{path}: the data in {root} has changed since this run trained on it "
            f"(other images or labels); {fix}"
        )


def _devices(value: str) -> Any:
    return int(value) if value.isdigit() else value


def _base_meta(settings: Settings, datamodule, run_id: str | None):
    from facekp_cli import __version__ as version
    from facekp_cli.model.checkpoint import ModelMeta
    from facekp_cli.provenance import dvc_data_hash, git_commit, split_fingerprint

    recorded = settings.to_dict()
    # Absolute, so `train --resume` from another folder finds the same data (check_resumed_data).
    recorded["data"]["root"] = str(Path(settings.data.root).resolve())
    return ModelMeta(
        preprocessing=datamodule.prep,
        width=settings.model.width,
        head=settings.model.head,
        flip_test=settings.model.flip_test,
        settings=recorded,
        facekp_version=version,
        git_commit=git_commit(Path(__file__).parent),  # the training code's commit
        data_hash=dvc_data_hash(settings.data.root),
        data_fingerprint=split_fingerprint(datamodule.split),
        mlflow_run_id=run_id,
        mean_shape=[[float(v) for v in row] for row in datamodule.mean_shape],
    )


def start_from_weights(network, path: str | Path, input_size: int) -> None:
    """Fine-tuning: a new run (fresh optimizer and schedule) starting from another model's weights."""
    from facekp_cli.model.checkpoint import load_checkpoint
    from facekp_cli.model.resolve import notify, resolve_init_from

    loaded = load_checkpoint(resolve_init_from(path).ckpt)
    try:
        network.load_state_dict(loaded.model.state_dict())
    except RuntimeError as exc:
        raise UsageError(
            f"{path}: its network ({loaded.meta.width} wide, {loaded.meta.head} head) does not fit this "
            f"run's model settings; match model.width and model.head to it"
        ) from exc
    trained_at = loaded.meta.preprocessing.input_size
    if trained_at != input_size:  # it loaded, but its filters read faces at another scale
        notify(
            f"facekp: warning: {path}: its weights were trained at {trained_at} px, this run uses "
            f"model.input_size={input_size}; fine-tuning works best at --set model.input_size={trained_at}"
        )


class SaveOnInterrupt(L.Callback):
    """Ctrl-C leaves a resumable last.ckpt (single process; under DDP the last epoch's stays)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.interrupted = False

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.interrupted = True
            if trainer.world_size == 1:
                trainer.save_checkpoint(self.run_dir / f"{LAST_NAME}.ckpt")


def run(
    settings: Settings, callbacks: Sequence[Any] = (), extra_tags: dict[str, str] | None = None
) -> TrainResult:
    """Train; `callbacks` lets the caller add e.g. a progress bar (then the bar is enabled) or a
    pruner; `extra_tags` go on the MLflow run (e.g. its parent run, for a tuning trial)."""
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, ProgressBar

    from facekp_cli.data.datamodule import KeypointDataModule
    from facekp_cli.experiments import callback, client, registry
    from facekp_cli.model.checkpoint import (
        FACEKP_KEY,
        ModelMeta,
        is_resumable,
        read_checkpoint_dict,
        strip_training_state,
    )
    from facekp_cli.model.lightning_module import KeypointModule
    from facekp_cli.model.random_state import RandomState
    from facekp_cli.run_folder import AtomicCheckpointIO, claim_run_folder, release_run_folder

    started = time.perf_counter()
    t = settings.train
    resume_from = Path(t.resume) if t.resume else None
    run_id = None
    if resume_from is not None:
        saved = read_checkpoint_dict(resume_from)
        if not is_resumable(saved):
            raise UsageError(
                f"{resume_from}: holds weights only (the stable best.ckpt copy); resume from the run's "
                f"last.ckpt, e.g. {t.out_dir / '<run>' / (LAST_NAME + '.ckpt')}"
            )
        meta = ModelMeta.from_dict(saved[FACEKP_KEY])
        settings, run_id = settings_for_resume(settings, meta.settings, resume_from), meta.mlflow_run_id
        t = settings.train
        check_resumed_data(settings, meta, resume_from)
    if (
        settings.tracking.enabled
        and settings.tracking.log_model
        and settings.tracking.register_as is not None
    ):
        registry.check_registry_names(settings.tracking.register_as)  # now, not after training
    if settings.tracking.enabled:
        client.check_reachable(client.resolve_uri(settings), settings.tracking.timeout_s)

    run_dir = choose_run_dir(settings, resume_from)
    check_outputs(settings, run_dir)  # unwritable places fail now, not after hours of training
    L.seed_everything(t.seed, workers=True, verbose=False)
    datamodule = KeypointDataModule(settings)
    datamodule.setup("fit")  # data errors surface now, before any process is launched
    if resume_from is not None:
        check_resumed_data(settings, meta, resume_from, datamodule)
    if not os.environ.get(RUN_DIR_ENV):  # DDP children write into the folder rank 0 claimed
        run_dir = claim_run_folder(
            run_dir, named=bool(t.run_name), resuming=resume_from is not None, last_name=LAST_NAME
        )
    module = KeypointModule(settings, _base_meta(settings, datamodule, run_id))
    if t.init_from and resume_from is None:
        start_from_weights(module.model, t.init_from, settings.model.input_size)

    checkpoints = ModelCheckpoint(
        dirpath=run_dir,
        filename=BEST_NAME,
        monitor="val_nme",
        mode="min",
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
    )
    checkpoints.CHECKPOINT_NAME_LAST = LAST_NAME
    interrupt_saver = SaveOnInterrupt(run_dir)
    all_callbacks = [checkpoints, interrupt_saver, RandomState()]
    if t.ema_decay > 0 or t.swa_from > 0:
        from facekp_cli.model.ema import WarmupEMA

        all_callbacks.append(WarmupEMA(t.ema_decay, t.swa_from))
    if t.early_stop_patience > 0:
        # Checked when validation ends, not at the training epoch's end: a run resumed from a checkpoint
        # saved between the two (Ctrl-C there) has no val_nme yet at that point.
        stopper = EarlyStopping(
            monitor="val_nme", mode="min", patience=t.early_stop_patience, check_on_train_epoch_end=False
        )
        all_callbacks.append(stopper)
    tracker = None
    if settings.tracking.enabled:
        tags = {
            "mlflow.runName": run_dir.name,
            "mlflow.source.git.commit": module.meta.git_commit,
            "facekp.git_commit": module.meta.git_commit,
            "facekp.data_hash": module.meta.data_hash,
            "facekp.version": module.meta.facekp_version,
            "facekp.run_dir": str(run_dir),
            **(extra_tags or {}),
        }
        tracker = callback.MlflowTracker(settings, tags, run_id=run_id)
        all_callbacks.append(tracker)
    all_callbacks.extend(callbacks)

    trainer = L.Trainer(
        max_epochs=t.epochs,
        accelerator=t.accelerator,
        devices=_devices(t.devices),
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision,
        gradient_clip_val=t.grad_clip or None,
        callbacks=all_callbacks,
        logger=False,
        default_root_dir=run_dir,
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        plugins=[AtomicCheckpointIO()],  # whole checkpoints even on a full disk or a kill mid-save
    )
    os.environ[RUN_DIR_ENV] = str(run_dir)  # DDP children re-run this command: same folder
    try:
        with warnings.catch_warnings():
            # Lightning's own use of torch APIs it has not caught up with; nothing a user can act on.
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            warnings.filterwarnings("ignore", message=r".*nn\.functional\.all_gather is deprecated")
            # The run folder exists because this run claimed it (under its lock) before training.
            warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty")
            # The module's batched augmentation hook is meant to win over the datamodule's (none).
            warnings.filterwarnings(
                "ignore", message=r".*overridden `on_after_batch_transfer` in `LightningModule`"
            )
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    except SystemExit as exc:  # Lightning turns Ctrl-C into sys.exit(1) after its clean-up
        if not interrupt_saver.interrupted:
            raise
        signal.signal(signal.SIGINT, signal.default_int_handler)
        last = run_dir / f"{LAST_NAME}.ckpt"
        raise TrainingInterrupted(
            "training interrupted",
            hint=f"resume with: facekp train --resume {last}" if last.exists() else None,
        ) from exc
    finally:
        os.environ.pop(RUN_DIR_ENV, None)
        release_run_folder(run_dir)

    best = run_dir / f"{BEST_NAME}.ckpt" if checkpoints.best_model_path else None
    last = run_dir / f"{LAST_NAME}.ckpt"
    metrics: dict[str, float] = {}
    stable = best_epoch = None
    if trainer.is_global_zero and best is not None and best.is_file():
        best_checkpoint = read_checkpoint_dict(best)
        best_meta = best_checkpoint[FACEKP_KEY]
        metrics, best_epoch = dict(best_meta.get("metrics", {})), best_meta.get("epoch")
        with atomic_path(t.best_path) as tmp:  # what eval, infer and export need, not --resume's state
            torch.save(strip_training_state(best_checkpoint), tmp)
        stable = t.best_path
    return TrainResult(
        best_checkpoint=best,
        last_checkpoint=last if last.is_file() else None,
        run_dir=run_dir,
        metrics=metrics,
        run_id=tracker.run_id if tracker is not None else run_id,
        epochs_completed=trainer.current_epoch,
        stable_best_path=stable,
        global_rank=trainer.global_rank,
        stopped_early=trainer.should_stop and trainer.current_epoch < t.epochs,
        seconds=time.perf_counter() - started,
        best_epoch=best_epoch,
        tracking_uri=tracker.uri if tracker is not None else None,
    )
