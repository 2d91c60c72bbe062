"""Run-folder naming (its one home: facekp_cli/run_folder.py); the tracking store checked before training."""

from __future__ import annotations

import pytest

from facekp_cli.errors import UsageError
from facekp_cli.run_folder import claim_run_folder, plan_run_folder, release_run_folder
from facekp_cli.services import train as service


def test_unnamed_runs_take_the_next_free_suffix_and_claiming_agrees(tmp_path):
    (tmp_path / "20260101-120000").mkdir()
    (tmp_path / "20260101-120000-2").mkdir()
    planned = plan_run_folder(tmp_path, None, "20260101-120000", last_name="last")
    assert planned == tmp_path / "20260101-120000-3"
    # a neighbour took -3 between planning and claiming: the claim takes the next suffix of it
    planned.mkdir()
    claimed = claim_run_folder(planned, named=False, resuming=False, last_name="last")
    try:
        assert claimed == tmp_path / "20260101-120000-3-2" and (claimed / ".lock").is_file()
    finally:
        release_run_folder(claimed)


def test_a_finished_named_run_is_refused_with_the_resume_command(tmp_path):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(UsageError, match=r"a run with this name exists.*--resume .*exp/last\.ckpt"):
        plan_run_folder(tmp_path, "exp", "20260101-120000", last_name="last")
    with pytest.raises(UsageError, match=r"a run with this name exists.*--resume .*exp/last\.ckpt"):
        claim_run_folder(tmp_path / "exp", named=True, resuming=False, last_name="last")
    release_run_folder(tmp_path / "exp")


def test_a_sqlite_store_named_by_the_environment_is_checked_before_training(
    tiny_settings, tmp_path, monkeypatch
):
    # the MLflow URI rule (tracking.uri, else $MLFLOW_TRACKING_URI, else ./mlflow.db) has one home
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker / 'm.db'}")
    settings = tiny_settings(**{"tracking.uri": None})
    assert settings.tracking.uri is None
    with pytest.raises(UsageError, match="afile is a file, not a folder"):
        service.check_outputs(settings, tmp_path / "runs" / "r1")
