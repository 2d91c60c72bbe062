"""conf.toml that is broken or wrong: a real `facekp` process exits 2 with one line naming file and key.

No value is ever silently replaced: a wrong type is an error, not a coercion (TOML `true` is not 1).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facekp_cli.errors import SettingsError
from facekp_cli.settings import _SECTIONS, load_settings

FACEKP = str(Path(sys.executable).with_name("facekp"))


def facekp(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FACEKP_")}
    full_env.update(env or {})
    return subprocess.run(
        [FACEKP, *args, "config", "show"], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=60
    )


def one_line_exit_2(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("facekp: error: ")
    return lines[0]


SYNTAX_ERRORS = {
    "unclosed table": ("[train\nepochs = 3\n", "line 1"),
    "unclosed string": ('[data]\nroot = "faces\n', "line 2"),
    "duplicate key": ("[train]\nepochs = 1\nepochs = 2\n", "line 3"),
    "duplicate table": ("[train]\nepochs = 1\n[train]\nlr = 0.1\n", "line 3"),
    "value without a key": ("[train]\n= 3\n", "line 2"),
    "bare word": ("[train]\nschedule = cosine\n", "line 2"),
    "missing value": ("[train]\nepochs =\n", "line 2"),
    "python syntax": ("[train]\nepochs = None\n", "line 2"),
    "yaml instead of toml": ("train:\n  epochs: 3\n", "line 1"),
}


@pytest.mark.parametrize("case", list(SYNTAX_ERRORS))
def test_toml_syntax_errors_name_the_file_and_line(tmp_path, case):
    text, where = SYNTAX_ERRORS[case]
    (tmp_path / "conf.toml").write_text(text)
    line = one_line_exit_2(facekp(tmp_path))
    assert "conf.toml: not valid TOML" in line and where in line


INVALID_VALUES = {
    "zero epochs": ("[train]\nepochs = 0\n", "train.epochs", "greater than or equal to 1"),
    "fractional epochs": ("[train]\nepochs = 2.5\n", "train.epochs", "fractional"),
    "true for a number": ("[train]\nepochs = true\n", "train.epochs", "not true/false"),
    "false for a rate": ("[train]\nlr = false\n", "train.lr", "not true/false"),
    "negative learning rate": ("[train]\nlr = -0.1\n", "train.lr", "greater than 0"),
    "negative seed": ("[train]\nseed = -1\n", "train.seed", "greater than or equal to 0"),
    "seed beyond 32 bits": ("[train]\nseed = 4294967296\n", "train.seed", "less than or equal"),
    "unknown choice": ('[model]\nloss = "huber"\n', "model.loss", "'wing'"),
    "two grey channels": ("[model]\nin_channels = 2\n", "model.in_channels", "1 or 3"),
    "input too small": ("[model]\ninput_size = 8\n", "model.input_size", "greater than or equal to 32"),
    "fraction of 1": ("[data]\nval_fraction = 1.0\n", "data.val_fraction", "less than 1"),
    "list for a number": ("[infer]\nbatch_size = [8]\n", "infer.batch_size", "valid integer"),
    "table for a string": ("[tracking]\nuri = {a = 1}\n", "tracking.uri", "valid string"),
    "date for a path": ("[data]\nroot = 2024-01-01\n", "data.root", "data.root"),
}


@pytest.mark.parametrize("case", list(INVALID_VALUES))
def test_invalid_values_name_key_value_and_file(tmp_path, case):
    text, key, words = INVALID_VALUES[case]
    (tmp_path / "conf.toml").write_text(text)
    line = one_line_exit_2(facekp(tmp_path))
    assert f"'{key}'" in line and "conf.toml" in line and words in line, line


def test_unknown_key_and_section_suggest_the_closest(tmp_path):
    (tmp_path / "conf.toml").write_text("[train]\nepoch = 3\n")
    assert "did you mean 'epochs'" in one_line_exit_2(facekp(tmp_path))
    (tmp_path / "conf.toml").write_text("[trian]\nepochs = 3\n")
    assert "did you mean 'train'" in one_line_exit_2(facekp(tmp_path))


def test_a_file_that_is_not_text(tmp_path):
    (tmp_path / "conf.toml").write_bytes(b"[train]\nepochs = 3\n\xff\xfe\x00")
    line = one_line_exit_2(facekp(tmp_path))
    assert "conf.toml" in line and ("UTF-8" in line or "utf-8" in line or "TOML" in line)


def test_config_path_that_is_a_folder_or_missing(tmp_path):
    (tmp_path / "cfg").mkdir()
    assert "cfg: config file not found" in one_line_exit_2(facekp(tmp_path, "--config", "cfg"))
    line = one_line_exit_2(facekp(tmp_path, env={"FACEKP_CONFIG": "missing.toml"}))
    assert "missing.toml: config file not found" in line


def test_empty_file_and_bom_are_fine(tmp_path):
    (tmp_path / "conf.toml").write_text("")
    assert facekp(tmp_path).returncode == 0
    (tmp_path / "conf.toml").write_bytes("\ufeff[train]\nepochs = 3\n".encode())
    assert facekp(tmp_path).returncode == 0


def test_bad_environment_value_names_the_variable(tmp_path):
    line = one_line_exit_2(facekp(tmp_path, env={"FACEKP_TRAIN__EPOCHS": "true"}))
    assert "FACEKP_TRAIN__EPOCHS" in line and "train.epochs" in line


# --- property: no number-valued key takes true/false from the file ------------------------------

_NUMBER_KEYS = [
    (section, key)
    for section, model in _SECTIONS.items()
    for key, field in model.model_fields.items()
    if field.annotation in (int, float)
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(choice=st.sampled_from(_NUMBER_KEYS), flag=st.booleans())
def test_no_number_key_takes_a_boolean_from_the_file(tmp_path, choice, flag):
    section, key = choice
    path = tmp_path / "b.toml"
    path.write_text(f"[{section}]\n{key} = {str(flag).lower()}\n")
    with pytest.raises(SettingsError, match=f"'{section}.{key}'.*not true/false"):
        load_settings(path, environ={})
