"""`facekp tune`: hyper-parameter search with Optuna, every trial a real `facekp train` run.

- The study lives in Optuna storage (SQLite beside the runs by default, or any URL), so a
  second `facekp tune` with the same study name continues it (load_if_exists).
- Each trial is an MLflow child run of one parent run per study (its id is kept in the study's
  user attributes, so a resumed study logs under the same parent).
- Trials are pruned through optuna-integration's PyTorchLightningPruningCallback on val_nme.
- The best parameters are written as a conf.toml fragment: `facekp --config tune_best.toml train`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facekp_cli.atomic import write_text_atomic
from facekp_cli.errors import ExternalServiceError, UsageError
from facekp_cli.search_space import Dimension, build_space, check_space
from facekp_cli.settings import Settings, replace_values

OBJECTIVE = "val_nme"
PARENT_RUN_ATTR = "facekp.mlflow_parent_run_id"
FIXED_ATTR, SPACE_ATTR = "facekp.fixed_settings", "facekp.space"
# Where and on what hardware a trial runs, not which model it trains: free to differ between runs.
RUNTIME_KEYS = frozenset(
    f"train.{key}"
    for key in (
        "resume",
        "run_name",
        "best_path",
        "out_dir",
        "accelerator",
        "devices",
        "strategy",
        "num_nodes",
    )
)


@dataclass(frozen=True)
class TrialSummary:
    number: int
    state: str  # COMPLETE, PRUNED, FAIL
    value: float | None
    params: dict[str, Any]


@dataclass(frozen=True)
class TuneResult:
    study: str
    storage: str
    trials: tuple[TrialSummary, ...]  # every trial of the study, resumed ones included
    ran: int  # trials run by this invocation
    best: TrialSummary | None
    fragment: Path | None
    parent_run_id: str | None
    seconds: float


def storage_url(settings: Settings) -> str:
    if settings.tune.storage:
        return settings.tune.storage
    folder = Path(settings.train.out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'tune.db').resolve()}"


SQLITE_MAGIC = b"SQLite format 3\x00"


def check_storage(url: str) -> None:
    """One line for a storage URL Optuna cannot use, before any trial (or folder) is made: not a
    URL, an unknown scheme, a missing driver, a SQLite file in a missing folder or not a database."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    where = f"--storage {url}"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(f"{where}: not a database URL (e.g. sqlite:///runs/tune.db)") from None
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise UsageError(f"{where}: unknown database scheme '{parsed.drivername}'") from None
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError as exc:
        raise UsageError(f"{where}: the database driver is not installed ({exc})") from None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    if not path.parent.is_dir():
        raise UsageError(f"{where}: folder {path.parent} does not exist")
    if path.is_dir():
        raise UsageError(f"{where}: {path} is a folder, not a database file")
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as fh:
            if fh.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                raise UsageError(f"{where}: {path} is not a SQLite database")


def fixed_settings(settings: Settings, space: tuple[Dimension, ...]) -> dict[str, Any]:
    """Every setting that shapes a trial's model but is not searched: the same for all its trials."""
    searched = {d.key for d in space}
    values = settings.to_dict()
    fixed = {
        f"{section}.{key}": value
        for section in ("model", "augment", "train")
        for key, value in values[section].items()
        if f"{section}.{key}" not in searched and f"{section}.{key}" not in RUNTIME_KEYS
    }
    fixed["data.root"] = str(Path(settings.data.root).resolve())
    fixed["data.val_fraction"] = values["data"]["val_fraction"]
    return fixed


def space_record(space: tuple[Dimension, ...]) -> list[dict[str, Any]]:
    return [
        {
            "key": d.key,
            "choices": list(d.choices),
            "low": d.low,
            "high": d.high,
            "log": d.log,
            "int": d.integer,
        }
        for d in sorted(space, key=lambda d: d.key)
    ]


def check_same_study(study, name: str, fixed: dict[str, Any], space: list[dict[str, Any]]) -> None:
    """A study's trials must be comparable: the same fixed settings and the same search space."""
    saved_fixed, saved_space = study.user_attrs.get(FIXED_ATTR), study.user_attrs.get(SPACE_ATTR)
    if saved_space is not None and saved_space != space:
        was = ", ".join(d["key"] for d in saved_space)
        raise UsageError(
            f"study '{name}' searched another space ({was}); give the same --space/--param or another --study"
        )
    if saved_fixed is not None:
        differ = sorted(k for k in set(saved_fixed) | set(fixed) if saved_fixed.get(k) != fixed.get(k))
        if differ:
            shown = "; ".join(f"{k}={saved_fixed.get(k)!r} (now {fixed.get(k)!r})" for k in differ[:3])
            more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
            raise UsageError(
                f"study '{name}' ran its trials with {shown}{more}; use the same settings or another --study"
            )


def fragment_text(
    study: str, value: float, params: dict[str, Any], fixed: dict[str, Any] | None = None
) -> str:
    """The best parameters, and the settings fixed for the search, as conf.toml sections.

    With the fixed settings in it, `facekp --config tune_best.toml train` trains the best trial's
    model whatever the defaults or the conf.toml of the day say.
    """
    import json

    lines = [f"# facekp tune: best trial of study '{study}', {OBJECTIVE} {value:.4f}"]
    lines.append("# searched settings and the ones fixed for the search (both shape the model)")
    sections: dict[str, list[str]] = {}
    merged = {**(fixed or {}), **params}
    for key, value_ in sorted(merged.items()):
        if value_ is None:
            continue  # TOML has no null: an unset optional setting stays unset
        section, name = key.split(".", 1)
        sections.setdefault(section, []).append(f"{name} = {json.dumps(value_)}")
    for section, rows in sections.items():
        lines += ["", f"[{section}]", *rows]
    return "\n".join(lines) + "\n"


def _summary(trial) -> TrialSummary:
    return TrialSummary(trial.number, trial.state.name, trial.value, dict(trial.params))


def run(
    settings: Settings,
    param_flags: list[str] = (),
    *,
    trial_callbacks: Callable[[int], list] | None = None,
    on_trial: Callable[[TrialSummary], None] | None = None,
) -> TuneResult:
    """Run tune.n_trials trials; `trial_callbacks(number)` adds Lightning callbacks to a trial's
    training (progress lines), `on_trial` hears of each finished trial."""
    import optuna
    from optuna_integration import PyTorchLightningPruningCallback

    from facekp_cli.experiments import runs
    from facekp_cli.services import train

    started = time.perf_counter()
    tune = settings.tune
    space: tuple[Dimension, ...] = build_space(tune.space, list(param_flags))
    if not space:
        raise UsageError("the search space is empty: give --space FILE or --param KEY=...")
    check_space(space, settings)
    if settings.train.resume:
        raise UsageError("train.resume cannot be combined with facekp tune (each trial starts afresh)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if settings.tune.storage:
        check_storage(settings.tune.storage)
    storage = storage_url(settings)
    # Judge from the second epoch on, once two trials have finished: searches here are short.
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if tune.pruner == "median" else None
    )
    from sqlalchemy.exc import SQLAlchemyError

    try:
        study = optuna.create_study(
            study_name=tune.study,
            storage=storage,
            direction="minimize",
            load_if_exists=True,
            pruner=pruner or optuna.pruners.NopPruner(),
        )
    except SQLAlchemyError as exc:  # a server that refuses, a locked or read-only file
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ExternalServiceError(
            f"--storage {storage}: cannot open the study database ({reason})"
        ) from None
    fixed, recorded_space = fixed_settings(settings, space), space_record(space)
    check_same_study(study, tune.study, fixed, recorded_space)
    study.set_user_attr(FIXED_ATTR, fixed)
    study.set_user_attr(SPACE_ATTR, recorded_space)
    # Seeded from the trials already in the study: reproducible, yet a resumed study samples new
    # points instead of replaying the first run's (a sampler's state is not stored with the study).
    study.sampler = optuna.samplers.TPESampler(seed=(settings.train.seed + len(study.trials)) % 2**32)
    parent = None
    if settings.tracking.enabled:
        parent = runs.start_parent_run(
            settings,
            f"tune-{tune.study}",
            {"facekp.tune.study": tune.study, "facekp.tune.storage": storage},
            run_id=study.user_attrs.get(PARENT_RUN_ATTR),
        )
        study.set_user_attr(PARENT_RUN_ATTR, parent)
    trials_dir = Path(settings.train.out_dir) / f"tune-{tune.study}"

    def objective(trial) -> float:
        chosen = {d.key: d.suggest(trial) for d in space}
        name = f"tune-{tune.study}-{trial.number:03d}"
        trial_settings = replace_values(
            settings,
            {
                **chosen,
                "train.run_name": name,
                "train.best_path": trials_dir / f"trial-{trial.number:03d}.ckpt",
            },
            source="tune",
        )
        tags = {"mlflow.parentRunId": parent, "facekp.tune.trial": str(trial.number)} if parent else {}
        pruning = PyTorchLightningPruningCallback(trial, monitor=OBJECTIVE)
        try:
            extra = trial_callbacks(trial.number) if trial_callbacks is not None else []
            result = train.run(trial_settings, callbacks=[pruning, *extra], extra_tags=tags)
        except optuna.TrialPruned:
            if parent:
                runs.mark_trial_run(
                    settings, parent, str(trial.number), {"facekp.tune.pruned": "true"}, "KILLED"
                )
            raise
        value = result.metrics.get(OBJECTIVE)
        if value is None:
            raise optuna.TrialPruned("no finite validation NME")
        trial.set_user_attr("checkpoint", str(result.stable_best_path))
        return float(value)

    before = len(study.trials)
    study.optimize(
        objective,
        n_trials=tune.n_trials,
        timeout=tune.timeout_s,
        catch=(),  # a failing trial is a failing command: its error reaches the user
        callbacks=[lambda _study, trial: on_trial(_summary(trial))] if on_trial is not None else None,
    )
    trials = tuple(_summary(t) for t in study.trials)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = _summary(study.best_trial) if complete else None
    fragment = None
    if best is not None:
        fragment = write_text_atomic(tune.out, fragment_text(tune.study, best.value, best.params, fixed))
    if parent:
        runs.finish_parent_run(
            settings,
            parent,
            best.params if best else {},
            {f"best_{OBJECTIVE}": best.value} if best else {},
            "FINISHED",
        )
    return TuneResult(
        study=tune.study,
        storage=storage,
        trials=trials,
        ran=len(study.trials) - before,
        best=best,
        fragment=fragment,
        parent_run_id=parent,
        seconds=time.perf_counter() - started,
    )
