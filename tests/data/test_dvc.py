"""DVC round trips through the CLI: synth -> push -> delete -> pull -> byte-identical, against a
local remote and against S3 served by moto on 127.0.0.1. Every test runs in its own git + DVC repo
under tmp_path, so the project's own .dvc cache is never touched."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.errors import ExitCode
from tests.data.dvc_repo import new_project, tree_digest

runner = CliRunner()
N_IMAGES = 12


@pytest.fixture()
def dvc_repo(tmp_path, monkeypatch):
    """A fresh git + DVC repository as the working directory, with no remote configured."""
    return new_project(tmp_path, monkeypatch, N_IMAGES)


def _round_trip(repo, env_remote_args: list[str]):
    data = repo / "faces_data"
    before = tree_digest(data)
    pushed = runner.invoke(app, ["data", "push", *env_remote_args])
    assert pushed.exit_code == 0, pushed.output
    assert (repo / "faces_data.dvc").is_file()
    status = runner.invoke(app, ["data", "status", "--json", *env_remote_args])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["in_sync"] is True

    shutil.rmtree(data)
    shutil.rmtree(repo / ".dvc" / "cache")  # force a real download
    missing = runner.invoke(app, ["data", "status", "--json", *env_remote_args])
    assert missing.exit_code == ExitCode.FAILURE
    assert json.loads(missing.output)["workspace"] == "missing"

    pulled = runner.invoke(app, ["data", "pull", *env_remote_args])
    assert pulled.exit_code == 0, pulled.output
    assert tree_digest(data) == before


def test_local_remote_round_trip(dvc_repo, tmp_path):
    store = tmp_path / "store"
    _round_trip(dvc_repo, ["--remote", str(store)])
    assert any(store.rglob("*"))  # DVC wrote the objects, in its own layout


def test_local_remote_modified_workspace_and_empty_remote(dvc_repo, tmp_path):
    store = tmp_path / "store"
    assert runner.invoke(app, ["data", "push", "--remote", str(store)]).exit_code == 0
    (dvc_repo / "faces_data" / "train" / "gt.csv").write_text("changed\n")
    status = runner.invoke(app, ["data", "status", "--remote", str(store)])
    assert status.exit_code == ExitCode.FAILURE and "modified" in status.output

    shutil.rmtree(dvc_repo / "faces_data")
    shutil.rmtree(dvc_repo / ".dvc" / "cache")
    empty = runner.invoke(app, ["data", "pull", "--remote", str(tmp_path / "empty")])
    # A synthetic version the remote lacks is regenerated (refusals: test_dvc_rebuild.py).
    assert empty.exit_code == 0 and "Rebuilt faces_data with the generator" in empty.output


def test_no_remote_and_no_dvc_file_are_explained(dvc_repo):
    push = runner.invoke(app, ["data", "push"])
    assert push.exit_code == ExitCode.USAGE and "data.remote" in push.output
    pull = runner.invoke(app, ["data", "pull", "--remote", "/nonexistent/store"])
    assert pull.exit_code == ExitCode.DATA and "facekp data synth" in pull.output


@pytest.fixture()
def s3_endpoint(s3_server):
    """moto's S3 server (tests/conftest.py) with a bucket for DVC remotes."""
    endpoint, client = s3_server
    client.create_bucket(Bucket="facekp-data")
    return endpoint


def test_s3_remote_round_trip_through_the_environment(dvc_repo, s3_endpoint, monkeypatch):
    monkeypatch.setenv("FACEKP_DATA__REMOTE", "s3://facekp-data/datasets")
    _round_trip(dvc_repo, [])
    import boto3

    listed = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
        Bucket="facekp-data", Prefix="datasets/"
    )
    assert listed["KeyCount"] >= N_IMAGES


def test_unreachable_s3_remote_is_an_external_error(dvc_repo, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    result = runner.invoke(app, ["data", "push", "--remote", "s3://facekp-data/x"])
    assert result.exit_code == ExitCode.EXTERNAL, result.output
    assert "facekp data synth" in result.output


def test_named_remote_from_dvc_config_and_unknown_names(dvc_repo, tmp_path):
    from dvc.repo import Repo

    with Repo(str(dvc_repo)) as repo, repo.config.edit() as conf:
        conf["remote"]["team"] = {"url": str(tmp_path / "team_store")}
        conf["core"]["remote"] = "team"
    assert runner.invoke(app, ["data", "push"]).exit_code == 0  # the default remote from .dvc/config
    assert any((tmp_path / "team_store").rglob("*"))
    status = runner.invoke(app, ["data", "status", "--remote", "team"])
    assert status.exit_code == 0 and "team" in status.output
    unknown = runner.invoke(app, ["data", "status", "--remote", "nosuch"])
    assert unknown.exit_code == ExitCode.USAGE and "known remotes: team" in unknown.output
