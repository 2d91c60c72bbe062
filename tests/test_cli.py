"""The `facekp` entry point: verbs, global options, error -> exit-code mapping, docs/CLI.md's code table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facekp_cli import __version__, errors
from facekp_cli.cli.main import app
from facekp_cli.errors import ExitCode

REPO = Path(__file__).resolve().parents[1]
FACEKP = str(Path(sys.executable).with_name("facekp"))
VERBS = ("data", "train", "infer", "eval", "export", "config", "align", "overlay", "tracking", "tune")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _in_tmp(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FACEKP, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_help_lists_every_verb_with_a_one_line_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    commands = result.stdout.split("Commands:", 1)[1]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\s{2}(\w+)\s+(\S.*)$", commands, re.M)}
    assert list(rows)[: len(VERBS)] == list(VERBS)
    for verb in VERBS:
        assert len(rows[verb]) > 5, f"{verb} has no one-line help"


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_has_help(verb):
    result = runner.invoke(app, [verb, "--help"])
    assert result.exit_code == 0, result.output
    assert f"facekp {verb}" in result.stdout


def test_global_options_are_documented():
    out = runner.invoke(app, ["--help"]).stdout
    for option in ("--config", "--set", "--verbose", "--quiet", "--version", "--install-completion"):
        assert option in out


def test_version_in_a_real_process():
    proc = run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"facekp {__version__}"


def test_no_arguments_shows_help_and_fails():
    proc = run()
    assert proc.returncode == 2
    assert "Commands:" in proc.stdout + proc.stderr


def test_unknown_verb_is_a_usage_error_without_traceback():
    proc = run("trian")
    assert proc.returncode == 2
    assert "No such command 'trian'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_option_is_a_usage_error_without_traceback():
    proc = run("config", "show", "--jsn")
    assert proc.returncode == 2
    assert "--jsn" in proc.stderr and "--json" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "--nope"], "No such option: --nope"),
        (["trian"], "No such command 'trian'"),
        (["config", "show", "--source", "nowhere"], "'nowhere' is not one of"),
        (["export", "--quantize", "int4"], "'int4' is not one of 'int8'"),
        (["--set"], "Option '--set' requires an argument"),
    ],
    ids=["verb option", "verb", "choice", "export choice", "root option"],
)
def test_usage_errors_are_one_line_with_the_help_hint(args, needle):
    """Click printed four lines (usage, hint, blank, error); facekp's errors are one (README)."""
    proc = run(*args)
    assert proc.returncode == ExitCode.USAGE
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("facekp: error: ") and needle in line and "--help" in line, line


def test_global_options_are_accepted_after_the_verb(tmp_path):
    """docs/tour/infer.md lists -q among infer's flags; `facekp train --set ...` said "No such option"."""
    placed_after = runner.invoke(app, ["config", "show", "train.epochs", "--set", "train.epochs=3", "--json"])
    assert placed_after.exit_code == 0, placed_after.output
    assert '"epochs": 3' in placed_after.stdout and '"train.epochs": "flag"' in placed_after.stdout
    short = runner.invoke(app, ["config", "show", "-s", "train.epochs=4", "--json"])
    assert '"epochs": 4' in short.stdout
    assert runner.invoke(app, ["config", "show", "-q"]).stdout.strip() == ""  # quiet after the verb
    (tmp_path / "other.toml").write_text("[train]\nepochs = 7\n")
    shown = runner.invoke(app, ["config", "show", "train.epochs", "--json", "--config", "other.toml"])
    assert shown.exit_code == 0 and '"epochs": 7' in shown.stdout
    loud = run("config", "show", "-v", "--sett", cwd=tmp_path)
    assert loud.returncode == 2 and "No such option: --sett" in loud.stderr
    # After `--` nothing is taken: a value that looks like a flag stays the verb's.
    literal = runner.invoke(app, ["config", "show", "--", "-q"])
    assert literal.exit_code == 2 and "unknown settings key or section '-q'" in literal.output


def test_facekp_error_is_one_line_and_verbose_adds_the_traceback(tmp_path):
    (tmp_path / "conf.toml").write_text("[train]\nepoch = 3\n")
    quiet = run("config", "show", cwd=tmp_path)
    assert quiet.returncode == 2
    assert quiet.stderr.strip().count("\n") == 0
    assert quiet.stderr.startswith("facekp: error:")
    loud = run("-v", "config", "show", cwd=tmp_path)
    assert loud.returncode == 2
    assert "Traceback (most recent call last)" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1] == quiet.stderr.strip()


def test_quiet_silences_the_table_but_not_json(tmp_path):
    assert runner.invoke(app, ["-q", "config", "show"]).stdout.strip() == ""
    assert '"settings"' in runner.invoke(app, ["-q", "config", "show", "--json"]).stdout


def test_bad_set_syntax_is_a_usage_error():
    result = runner.invoke(app, ["--set", "epochs", "config", "show"])
    assert result.exit_code == 2
    assert "SECTION.KEY=VALUE" in result.stderr


def test_config_keys_lists_every_valid_key():
    from facekp_cli.settings import valid_keys

    result = runner.invoke(app, ["config", "keys"])
    assert result.stdout.split() == valid_keys()


def test_config_show_rejects_an_unknown_name_with_a_suggestion():
    result = runner.invoke(app, ["config", "show", "trian.epochs"])
    assert result.exit_code == 2
    assert "'train.epochs'" in result.stderr


# --- exit codes: one table, every error class mapped, docs/CLI.md lists them --------------------


def test_exit_codes_are_distinct():
    values = [code.value for code in ExitCode]
    assert len(values) == len(set(values))


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (errors.SettingsError, ExitCode.USAGE),
        (errors.UsageError, ExitCode.USAGE),
        (errors.DataError, ExitCode.DATA),
        (errors.ImageDecodeError, ExitCode.DATA),
        (errors.ModelFileError, ExitCode.MODEL),
        (errors.ExternalServiceError, ExitCode.EXTERNAL),
        (errors.VerificationError, ExitCode.FAILURE),
    ],
)
def test_error_classes_map_to_their_exit_codes(cls, code):
    assert issubclass(cls, errors.FacekpError)
    assert cls("x").exit_code == code


def test_the_docs_list_every_exit_code():
    guide = (REPO / "docs" / "CLI.md").read_text(encoding="utf-8")
    section = guide.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for code in ExitCode:
        assert re.search(rf"^\|\s*{code.value}\s*\|", section, re.M), f"docs/CLI.md lacks {code.value}"


def test_error_hint_is_shown_in_the_message():
    assert str(errors.DataError("a.csv: bad", hint="fix it")) == "a.csv: bad (fix it)"


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in readme
    commands = [line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert commands == ["make test"]


# --- the Dockerfile cannot be built here; check what can be checked ------------------------


def test_dockerfile_settings_and_copied_paths_are_valid():
    from facekp_cli.settings import load_settings

    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    env = dict(re.findall(r"(FACEKP_\w+)=(\S+)", text))
    assert env, "the image is expected to place outputs on its volumes through FACEKP_* settings"
    load_settings(environ=env)  # raises SettingsError on a misspelt key or bad value
    for line in text.splitlines():
        if line.startswith("COPY"):
            sources = [part for part in line.split()[1:-1] if not part.startswith("--")]
            for source in sources:
                assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    assert 'ENTRYPOINT ["facekp"]' in text
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    for heavy in (".venv", "faces_data", "runs", "mlflow.db", ".git"):
        assert heavy in ignored
