"""`facekp data pull` on a fresh clone whose remote lacks the version: a synthetic set is rebuilt with
the generator and accepted only when its DVC hash equals the .dvc file's. Each test runs in its own
git + DVC repository under tmp_path whose default remote is a local folder that does not exist."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.data.synth.generator import GENERATOR_VERSION
from facekp_cli.errors import ExitCode
from tests.data.dvc_repo import new_project, tree_digest

runner = CliRunner()
N_IMAGES = 12


@pytest.fixture()
def fresh_clone(tmp_path, monkeypatch):
    """A repo with a pushed synthetic set, then made to look freshly cloned: no data, no cache, no store."""
    repo = new_project(tmp_path, monkeypatch, N_IMAGES)
    store = tmp_path / "store"
    pushed = runner.invoke(app, ["data", "push", "--remote", str(store)])
    assert pushed.exit_code == 0, pushed.output
    digest = tree_digest(repo / "faces_data")
    shutil.rmtree(repo / "faces_data")
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(store)
    (repo / ".dvc" / "config").write_text(
        "[core]\n    remote = local\n['remote \"local\"']\n    url = ../.dvcstore\n"
    )
    return repo, digest


def _edit_dvc_file(repo, edit) -> None:
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(str(repo / "faces_data.dvc")) as document:
        edit(document)


def test_push_records_the_synthetic_recipe(fresh_clone):
    from dvc.utils.serialize import load_yaml

    repo, _ = fresh_clone
    meta = load_yaml(str(repo / "faces_data.dvc"))["meta"]["facekp_synth"]
    assert meta == {"version": GENERATOR_VERSION, "n": N_IMAGES, "seed": 0, "test_fraction": 0.1}


def test_pull_rebuilds_a_missing_synthetic_version_and_status_is_clean(fresh_clone):
    repo, digest = fresh_clone
    dvc_before = (repo / "faces_data.dvc").read_text()
    pulled = runner.invoke(app, ["data", "pull"])
    assert pulled.exit_code == 0, pulled.output
    line = " ".join(pulled.stdout.split())
    assert line.startswith(f"Rebuilt faces_data with the generator (v{GENERATOR_VERSION}, 12 images, seed 0")
    assert "matches faces_data.dvc" in line and "does not hold it" in line
    assert tree_digest(repo / "faces_data") == digest  # byte for byte what was pushed
    assert (repo / "faces_data.dvc").read_text() == dvc_before
    status = runner.invoke(app, ["data", "status", "--json"])
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert report["in_sync"] and report["workspace"] == "in sync"
    assert report["remote_state"] == "rebuildable"
    assert not [p for p in repo.iterdir() if p.name.startswith(".faces_data.")]  # no scratch left
    # Now in the cache, so a push uploads it and the remote then holds it.
    assert runner.invoke(app, ["data", "push"]).exit_code == 0
    status = json.loads(runner.invoke(app, ["data", "status", "--json"]).stdout)
    assert status["remote_state"] == "in sync"


def test_a_recipe_that_does_not_give_the_recorded_hash_is_refused(fresh_clone):
    repo, _ = fresh_clone
    _edit_dvc_file(repo, lambda d: d["meta"]["facekp_synth"].update(seed=5))
    pulled = runner.invoke(app, ["data", "pull"])
    assert pulled.exit_code == ExitCode.DATA
    message = " ".join(pulled.stderr.split())
    from dvc.utils.serialize import load_yaml

    recorded = load_yaml(str(repo / "faces_data.dvc"))["outs"][0]["md5"]
    assert "gives md5" in message and f"not {recorded} as recorded" in message
    assert not (repo / "faces_data").exists()
    assert not [p for p in repo.iterdir() if p.name.startswith(".faces_data.")]


def test_a_version_that_is_not_synthetic_is_a_clear_error_naming_the_remote(fresh_clone):
    repo, _ = fresh_clone
    _edit_dvc_file(repo, lambda d: d.pop("meta"))
    pulled = runner.invoke(app, ["data", "pull"])
    assert pulled.exit_code == ExitCode.DATA
    message = " ".join(pulled.stderr.split())
    assert "remote local" in message and ".dvcstore" in message
    assert "not the embedded synthetic set" in message and "dvc remote add -d" in message
    assert len(pulled.stderr.strip().splitlines()) == 1
    assert not (repo / "faces_data").exists()


def test_another_generator_version_is_refused_before_generating(fresh_clone):
    repo, _ = fresh_clone
    _edit_dvc_file(repo, lambda d: d["meta"]["facekp_synth"].update(version="1"))
    pulled = runner.invoke(app, ["data", "pull"])
    assert pulled.exit_code == ExitCode.DATA
    assert "generator v1" in pulled.stderr and "cannot be rebuilt here" in pulled.stderr


def test_a_dvc_file_without_meta_names_the_default_set_by_its_file_count(tmp_path):
    from facekp_cli.data.synth.rebuild import read_recipe

    default = tmp_path / "default.dvc"
    default.write_text("outs:\n- md5: abc.dir\n  size: 1\n  nfiles: 6003\n  hash: md5\n  path: faces_data\n")
    recipe = read_recipe(default)
    assert (recipe.n, recipe.seed, recipe.test_fraction) == (6000, 0, 0.1)
    other = tmp_path / "other.dvc"
    other.write_text("outs:\n- md5: abc.dir\n  size: 1\n  nfiles: 5400\n  hash: md5\n  path: faces_data\n")
    assert read_recipe(other) is None
