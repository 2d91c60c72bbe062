"""Verbs are entry points: a third-party distribution on sys.path adds one; a broken one is skipped.

Each test builds a real distribution folder (a package plus a *.dist-info with entry_points.txt)
and runs `facekp` in a subprocess with PYTHONPATH pointing at it, as an installed plugin would be.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FACEKP = str(Path(sys.executable).with_name("facekp"))

GOOD_PLUGIN = '''
import typer

from facekp_cli.cli.context import build_settings
from facekp_cli.errors import DataError

app = typer.Typer(help="Say hello (a test plugin).")


@app.command("greet")
def greet(ctx: typer.Context, times: int = typer.Option(1, "--times"), name: str = "world") -> None:
    """Greet someone."""
    epochs = build_settings(ctx).train.epochs
    for _ in range(times):
        typer.echo(f"hello {name} (epochs={epochs})")


@app.command("fail")
def fail() -> None:
    """Raise a facekp error."""
    raise DataError("plugin.csv:3: bad row")


@app.command("interrupt")
def interrupt() -> None:
    """Simulate Ctrl-C."""
    raise KeyboardInterrupt


def shout(words: str) -> None:
    """A plain-function verb."""
    typer.echo(words.upper())
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "facekp_demo_good").mkdir()
    (root / "facekp_demo_good" / "__init__.py").write_text(GOOD_PLUGIN)
    (root / "facekp_demo_broken").mkdir()
    (root / "facekp_demo_broken" / "__init__.py").write_text("raise RuntimeError('boom at import')\n")
    info = root / "facekp_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: facekp-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [facekp.commands]
            hello = facekp_demo_good:app
            broken = facekp_demo_broken:app
            shout = facekp_demo_good:shout
            train = facekp_demo_good:app
            overlay = facekp_demo_good:app
            tune = facekp_demo_good:shout
            """
        )
    )
    return root


def facekp(plugin_path: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEKP_")}
    env["PYTHONPATH"] = str(plugin_path)
    return subprocess.run([FACEKP, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60)


def test_good_plugin_is_listed_and_broken_one_reported_in_one_line(plugin_path):
    proc = facekp(plugin_path, "--help")
    assert proc.returncode == 0
    assert "hello" in proc.stdout and "Say hello (a test plugin)." in proc.stdout
    assert "shout" in proc.stdout
    assert "broken" not in proc.stdout
    broken = [line for line in proc.stderr.splitlines() if "'broken'" in line]
    assert len(broken) == 1
    assert "boom at import" in broken[0] and "skipped" in broken[0]


def test_a_plugin_cannot_replace_a_builtin_verb(plugin_path):
    proc = facekp(plugin_path, "train", "--help")
    assert "Say hello" not in proc.stdout
    clash = [line for line in proc.stderr.splitlines() if "'train'" in line]
    assert len(clash) == 1 and "facekp_demo_good:app" in clash[0]


@pytest.mark.parametrize("verb", ["overlay", "tune"])
def test_a_plugin_cannot_replace_a_later_builtin_verb(plugin_path, verb):
    # The plugin's folder comes first on sys.path, so its entry point is seen before the built-in's:
    # only knowing every built-in as built-in keeps `facekp overlay` facekp's own.
    proc = facekp(plugin_path, verb, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Say hello" not in proc.stdout and "A plain-function verb" not in proc.stdout
    clash = [line for line in proc.stderr.splitlines() if f"'{verb}'" in line]
    assert len(clash) == 1 and "facekp_demo_good" in clash[0]


def test_every_builtin_verb_in_pyproject_is_known_as_builtin():
    from facekp_cli.cli.main import _BUILTIN_ORDER
    from facekp_cli.compat import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    declared = pyproject["project"]["entry-points"]["facekp.commands"]
    assert sorted(_BUILTIN_ORDER) == sorted(declared)
    assert all(value.startswith("facekp_cli.cli.") for value in declared.values())


def test_plugin_verb_runs_with_settings_and_typed_options(plugin_path, tmp_path):
    (tmp_path / "conf.toml").write_text("[train]\nepochs = 7\n")
    proc = facekp(plugin_path, "hello", "greet", "--times", "2", "--name", "ann", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["hello ann (epochs=7)"] * 2


def test_plugin_option_values_are_still_validated(plugin_path):
    proc = facekp(plugin_path, "hello", "greet", "--times", "many")
    assert proc.returncode == 2
    assert "--times" in proc.stderr and "integer" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_plain_function_plugin_runs(plugin_path):
    proc = facekp(plugin_path, "shout", "hi there")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "HI THERE"


def test_plugin_errors_map_to_exit_codes(plugin_path):
    proc = facekp(plugin_path, "hello", "fail")
    assert proc.returncode == 3
    assert "facekp: error: plugin.csv:3: bad row" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = facekp(plugin_path, "hello", "interrupt")
    assert proc.returncode == 130
    assert "interrupted" in proc.stderr


def test_broken_plugin_does_not_disturb_completion(plugin_path):
    env_args = {"_FACEKP_COMPLETE": "complete_bash", "COMP_WORDS": "facekp he", "COMP_CWORD": "1"}
    env = {**os.environ, **env_args, "PYTHONPATH": str(plugin_path)}
    proc = subprocess.run([FACEKP], capture_output=True, text=True, env=env, timeout=60)
    assert proc.stdout.split() == ["hello"]
    assert proc.stderr == ""  # a warning would garble the user's prompt on TAB
