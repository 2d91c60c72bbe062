"""The hyper-parameter search space of `facekp tune`: from a TOML file and `--param` flags.

TOML, one table per setting (keys are facekp settings, checked like conf.toml's):

    [train.lr]
    low = 0.001
    high = 0.01
    log = true            # float or int range; int when low and high are both integers
    [model.head]
    choices = ["regression", "integral"]

Flags: `--param train.lr=0.001..0.01:log`, `--param train.batch_size=32..128`,
`--param model.head=regression,integral`. A flag replaces the file's entry for the same key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facekp_cli.errors import SettingsError, UsageError
from facekp_cli.settings import Settings, replace_values, valid_keys

_CHOICE_TYPES = (str, int, float, bool, type(None))  # what Optuna stores as a categorical value


@dataclass(frozen=True)
class Dimension:
    key: str  # "section.key"
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial picks for this setting."""
        if self.choices:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log)


# Used when no space is given: what the real-face ablation found worth searching (docs/bench/real.md).
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "train.lr": {"low": 1e-3, "high": 1e-2, "log": True},
    "train.batch_size": {"choices": [32, 64]},
    "train.ema_decay": {"choices": [0.0, 0.99, 0.995]},
    "model.head": {"choices": ["regression", "integral"]},
    "model.loss": {"choices": ["wing", "l1"]},
    "augment.rotate_deg": {"low": 10.0, "high": 45.0},
}


def _dimension(key: str, spec: Mapping[str, Any], source: str) -> Dimension:
    if key not in valid_keys():
        from difflib import get_close_matches

        close = get_close_matches(key, valid_keys(), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise SettingsError(f"{source}: unknown setting '{key}' in the search space{hint}")
    unknown = set(spec) - {"choices", "low", "high", "log"}
    if unknown:
        raise SettingsError(f"{source}: [{key}] has unknown field(s) {', '.join(sorted(unknown))}")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise SettingsError(f"{source}: [{key}] choices must be a non-empty list")
        for choice in choices:
            if not isinstance(choice, _CHOICE_TYPES) or (
                isinstance(choice, float) and not math.isfinite(choice)
            ):
                raise SettingsError(
                    f"{source}: [{key}] choice {choice!r} is not a finite number, string or boolean"
                )
        return Dimension(key, choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    if numbers and not all(math.isfinite(v) for v in (low, high)):
        raise SettingsError(f"{source}: [{key}] low and high must be finite numbers (got {low!r}, {high!r})")
    if not numbers or low >= high:
        raise SettingsError(f"{source}: [{key}] needs numbers low < high, or choices = [...]")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise SettingsError(f"{source}: [{key}] a log range needs low > 0")
    integer = isinstance(low, int) and isinstance(high, int)
    return Dimension(key, low=low, high=high, log=log, integer=integer)


def read_space_file(path: Path) -> dict[str, dict[str, Any]]:
    from facekp_cli.compat import tomllib

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: search space file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: not a readable TOML search space ({exc})") from None
    flat: dict[str, dict[str, Any]] = {}
    for section, table in data.items():
        if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
            raise SettingsError(f"{path}: expected tables like [train.lr] with low/high or choices")
        for key, spec in table.items():
            flat[f"{section}.{key}"] = spec
    return flat


def _number(text: str) -> int | float:
    return int(text) if text.lstrip("-").isdigit() else float(text)


def parse_param_flag(item: str) -> tuple[str, dict[str, Any]]:
    """'train.lr=0.001..0.01:log' -> ('train.lr', {low, high, log}); 'a.b=x,y' -> choices."""
    key, sep, value = item.partition("=")
    if not sep or not value:
        raise UsageError(f"--param {item!r}: expected KEY=LOW..HIGH[:log] or KEY=A,B,...")
    body, _, option = value.partition(":")
    try:
        if ".." in body:
            low, high = body.split("..", 1)
            return key.strip(), {"low": _number(low), "high": _number(high), "log": option == "log"}
        choices = [_scalar(v.strip()) for v in body.split(",")]
    except ValueError:
        raise UsageError(f"--param {item!r}: LOW and HIGH must be numbers") from None
    return key.strip(), {"choices": choices}


def _scalar(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return _number(text)
    except ValueError:
        return text


def check_space(space: tuple[Dimension, ...], settings: Settings) -> None:
    """Every choice and both ends of every range must be a valid value of its setting, found now
    rather than inside the first trial (where Optuna would record a failed trial)."""
    for dim in space:
        values = dim.choices or (dim.low, dim.high)
        for value in values:  # "invalid value 'x' for 'model.head' from the search space: ..."
            replace_values(settings, {dim.key: value}, source="the search space")


def build_space(path: Path | None, flags: list[str]) -> tuple[Dimension, ...]:
    """The file's space (or the default one), with --param flags replacing or adding keys."""
    source = str(path) if path else "the default search space"
    specs = {key: (spec, source) for key, spec in (read_space_file(path) if path else DEFAULT_SPACE).items()}
    for item in flags:
        key, spec = parse_param_flag(item)
        specs[key] = (spec, "--param")
    return tuple(_dimension(key, spec, where) for key, (spec, where) in specs.items())
