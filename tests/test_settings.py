"""Settings: defaults < conf.toml < FACEKP_* env < flags; unknown keys and bad values are exit 2."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.compat import tomllib
from facekp_cli.errors import SettingsError
from facekp_cli.settings import Settings, load_settings, valid_keys

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No stray FACEKP_* variables and no ./conf.toml unless a test writes one."""
    import os

    for name in list(os.environ):
        if name.startswith("FACEKP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def show(*args: str, env: dict[str, str] | None = None, names: tuple[str, ...] = ()) -> dict:
    result = runner.invoke(app, [*args, "config", "show", "--json", *names], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def invoke_error(*args: str, env: dict[str, str] | None = None):
    result = runner.invoke(app, [*args, "config", "show"], env=env)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- conf.toml at the repo root documents every key and cannot drift -----------------------


def _conf_lines_by_section() -> dict[str, dict[str, str]]:
    """{section: {key: 'key = value' line without comment markers}} for set and commented keys."""
    out: dict[str, dict[str, str]] = {}
    section = None
    for raw in (REPO / "conf.toml").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if m := re.fullmatch(r"\[(\w+)\]", line):
            section = m.group(1)
            out[section] = {}
            continue
        m = re.match(r"#?\s*(\w+)\s*=(.*?)(\s+#.*)?$", line)
        if section and m:
            out[section][m.group(1)] = f"{m.group(1)} ={m.group(2)}"
    return out


def test_conf_toml_lists_every_valid_key():
    documented = {f"{s}.{k}" for s, keys in _conf_lines_by_section().items() for k in keys}
    missing = sorted(set(valid_keys()) - documented)
    unknown = sorted(documented - set(valid_keys()))
    assert not missing, f"conf.toml lacks {missing}: document new settings keys there"
    assert not unknown, f"conf.toml lists keys that do not exist: {unknown}"


def test_conf_toml_values_equal_the_defaults_set_or_commented():
    defaults = Settings().to_dict()
    for section, lines in _conf_lines_by_section().items():
        for key, line in lines.items():
            if line.rstrip().endswith("="):  # `# key =`: documented as unset
                assert defaults[section][key] is None, f"{section}.{key} has a default; show it"
                continue
            value = tomllib.loads(line)[key]
            assert value == defaults[section][key], f"{section}.{key} = {value!r} is not its default"


def test_conf_toml_loads_and_reports_set_keys_as_file(monkeypatch):
    monkeypatch.chdir(REPO)
    loaded = load_settings(environ={})
    assert loaded.to_dict() == Settings().to_dict()
    assert loaded.sources["train.epochs"] == "file:conf.toml"
    assert loaded.sources["model.loss"] == "default"  # commented out, so not from the file


def test_every_key_has_a_comment():
    for raw in (REPO / "conf.toml").read_text(encoding="utf-8").splitlines():
        if re.match(r"#?\s*\w+\s*=", raw.strip()):
            assert re.search(r"\s#\s+\S", raw.split("=", 1)[1]), f"no comment on: {raw}"


# --- precedence, shown by `facekp config show --json` --------------------------------------


def test_each_layer_overrides_the_one_below(tmp_path):
    (tmp_path / "conf.toml").write_text("[train]\nepochs = 3\nbatch_size = 8\nlr = 0.01\n")
    env = {"FACEKP_TRAIN__BATCH_SIZE": "16", "FACEKP_TRAIN__LR": "0.02"}
    out = show("--set", "train.lr=0.05", env=env)
    assert out["settings"]["train"] == {**out["settings"]["train"], "epochs": 3, "batch_size": 16, "lr": 0.05}
    assert out["sources"]["train.epochs"] == "file:conf.toml"
    assert out["sources"]["train.batch_size"] == "env:FACEKP_TRAIN__BATCH_SIZE"
    assert out["sources"]["train.lr"] == "flag"
    assert out["sources"]["train.seed"] == "default"
    assert out["settings"]["train"]["seed"] == 0
    assert out["config_file"] == "conf.toml"


def test_verb_flags_win_over_set_and_none_flags_are_dropped():
    loaded = load_settings(None, overrides={"train.epochs": 9, "train.lr": None}, environ={})
    assert loaded.train.epochs == 9 and loaded.sources["train.epochs"] == "flag"
    assert loaded.sources["train.lr"] == "default"  # a flag left at None never masks lower layers


def test_config_option_and_env_var_select_the_file(tmp_path):
    (tmp_path / "conf.toml").write_text("[train]\nepochs = 3\n")
    other = tmp_path / "other.toml"
    other.write_text("[train]\nepochs = 4\n")
    assert show("--config", str(other))["settings"]["train"]["epochs"] == 4
    out = show(env={"FACEKP_CONFIG": str(other)})
    assert out["settings"]["train"]["epochs"] == 4
    assert out["sources"]["train.epochs"] == f"file:{other}"
    assert show()["settings"]["train"]["epochs"] == 3


def test_missing_config_file_is_a_usage_error(tmp_path):
    line = invoke_error("--config", str(tmp_path / "nope.toml"))
    assert "nope.toml" in line
    assert "not found" in line or "does not exist" in line


def test_section_and_key_filters():
    out = show(names=("train.epochs", "data"))
    assert set(out["sources"]) == {"train.epochs"} | {k for k in valid_keys() if k.startswith("data.")}


# --- unknown keys and invalid values: exit 2, one line, names key and source ---------------


def test_misspelt_key_in_file_names_it_and_suggests(tmp_path):
    (tmp_path / "conf.toml").write_text("[train]\nepoch = 3\n")
    line = invoke_error()
    assert "epoch" in line and "'epochs'" in line and "conf.toml" in line


def test_unknown_section_in_file(tmp_path):
    (tmp_path / "conf.toml").write_text("[trian]\nepochs = 3\n")
    line = invoke_error()
    assert "trian" in line and "'train'" in line


def test_top_level_key_outside_a_section(tmp_path):
    (tmp_path / "conf.toml").write_text("epochs = 3\n")
    line = invoke_error()
    assert "epochs" in line and "section" in line


def test_unknown_env_var_names_it_and_suggests():
    line = invoke_error(env={"FACEKP_TRAIN__EPOCH": "3"})
    assert "FACEKP_TRAIN__EPOCH" in line and "FACEKP_TRAIN__EPOCHS" in line and "environment" in line


def test_env_var_without_section_is_rejected():
    line = invoke_error(env={"FACEKP_EPOCHS": "3"})
    assert "FACEKP_EPOCHS" in line


@pytest.mark.parametrize(
    ("toml", "key", "bad"),
    [
        ("[train]\nepochs = 0\n", "train.epochs", "0"),
        ('[train]\nepochs = "many"\n', "train.epochs", "many"),
        ("[model]\nin_channels = 2\n", "model.in_channels", "2"),
        ('[infer]\nformat = "xml"\n', "infer.format", "xml"),
        ("[data]\nval_fraction = 1.5\n", "data.val_fraction", "1.5"),
    ],
)
def test_invalid_value_in_file_names_key_value_and_file(tmp_path, toml, key, bad):
    (tmp_path / "conf.toml").write_text(toml)
    line = invoke_error()
    assert key in line and bad in line and "conf.toml" in line


def test_invalid_value_in_env_names_the_variable():
    line = invoke_error(env={"FACEKP_TRAIN__BATCH_SIZE": "-1"})
    assert "train.batch_size" in line and "FACEKP_TRAIN__BATCH_SIZE" in line


def test_invalid_flag_value_names_the_flag():
    line = invoke_error("--set", "train.epochs=zero")
    assert "train.epochs" in line and "flag" in line


def test_toml_syntax_error_names_the_file(tmp_path):
    (tmp_path / "conf.toml").write_text("[train\nepochs = 3\n")
    line = invoke_error()
    assert "conf.toml" in line and "TOML" in line


def test_verbose_shows_the_traceback(tmp_path):
    (tmp_path / "conf.toml").write_text("[train]\nepoch = 3\n")
    result = runner.invoke(app, ["-v", "config", "show"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "SettingsError" in result.stderr


def test_env_only_layer_needs_no_file():
    loaded = load_settings(environ={"FACEKP_TRACKING__URI": "http://127.0.0.1:5000"})
    assert loaded.config_path is None
    assert loaded.tracking.uri == "http://127.0.0.1:5000"
    assert loaded.sources["tracking.uri"] == "env:FACEKP_TRACKING__URI"


def test_empty_env_value_means_unset_for_optional_keys():
    loaded = load_settings(environ={"FACEKP_DATA__REMOTE": ""})
    assert loaded.data.remote is None


def test_settings_are_frozen():
    loaded = load_settings(environ={})
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error type
        loaded.train.epochs = 3  # type: ignore[misc]


# --- property tests --------------------------------------------------------------------------

_SLOW_OK = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_SLOW_OK
@given(epochs=st.integers(min_value=1, max_value=2**62))
def test_any_valid_epochs_round_trips_through_file_and_env(tmp_path, epochs):
    path = tmp_path / "p.toml"
    path.write_text(f"[train]\nepochs = {epochs}\n")
    from_file = load_settings(path, environ={})
    from_env = load_settings(environ={"FACEKP_TRAIN__EPOCHS": str(epochs)})
    assert from_file.train.epochs == from_env.train.epochs == epochs
    assert from_file.sources["train.epochs"] == f"file:{path}"


@_SLOW_OK
@given(lr=st.floats(min_value=1e-12, max_value=1e6, allow_nan=False))
def test_any_positive_lr_round_trips_through_env(lr):
    assert load_settings(environ={"FACEKP_TRAIN__LR": repr(lr)}).train.lr == lr


@_SLOW_OK
@given(epochs=st.integers(max_value=0))
def test_non_positive_epochs_are_rejected(epochs):
    with pytest.raises(SettingsError, match=r"train\.epochs"):
        load_settings(environ={"FACEKP_TRAIN__EPOCHS": str(epochs)})


_identifier = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
_sections = ["data", "model", "augment", "train", "tracking", "infer", "eval", "export"]


@_SLOW_OK
@given(section=st.sampled_from(_sections), key=_identifier)
def test_any_unknown_key_is_rejected_in_file_and_env(tmp_path, section, key):
    if f"{section}.{key}" in valid_keys():
        return
    path = tmp_path / "u.toml"
    path.write_text(f"[{section}]\n{key} = 1\n")
    with pytest.raises(SettingsError, match=re.escape(f"{section}.{key}")):
        load_settings(path, environ={})
    name = f"FACEKP_{section.upper()}__{key.upper()}"
    with pytest.raises(SettingsError, match=name):
        load_settings(environ={name: "1"})


def test_unknown_key_exits_2_in_a_real_process(tmp_path):
    import subprocess

    (tmp_path / "conf.toml").write_text("[train]\nepoch = 3\n")
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("facekp")), "config", "show"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr
    assert "'epochs'" in proc.stderr


# --- presets: a named layer between the defaults and conf.toml -------------------------------------


def test_a_preset_sits_between_defaults_and_the_config_file(tmp_path):
    (tmp_path / "conf.toml").write_text("[model]\nwidth = 48\n")
    out = show("--preset", "fast", names=("model.input_size", "model.width", "model.flip_test"))
    assert out["settings"]["model"] == {"input_size": 64, "width": 48, "flip_test": False}
    assert out["sources"]["model.input_size"] == "preset:fast"
    assert out["sources"]["model.width"] == "file:conf.toml"
    flagged = show("--preset", "fast", "--set", "model.input_size=80", names=("model.input_size",))
    assert flagged["settings"]["model"]["input_size"] == 80
    assert flagged["sources"]["model.input_size"] == "flag"
    from_env = show(env={"FACEKP_PRESET": "cpu"}, names=("train.epochs",))
    assert from_env["sources"]["train.epochs"] == "preset:cpu"


def test_an_unknown_preset_is_a_usage_error_with_a_suggestion():
    result = runner.invoke(app, ["--preset", "fsat", "config", "show"])
    assert result.exit_code == 2
    assert "unknown preset 'fsat'" in result.output and "did you mean 'fast'" in result.output


@pytest.mark.parametrize("extra", [[], ["--set", "train.swa_from=0.5", "--set", "train.schedule=cosine"]])
def test_swa_lr_without_averaging_on_a_one_cycle_is_a_usage_error(extra):
    result = runner.invoke(app, ["--set", "train.swa_lr=0.3", *extra, "config", "show"])
    assert result.exit_code == 2
    assert "invalid settings in 'train': train.swa_lr" in result.output
