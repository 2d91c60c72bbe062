"""A fresh git + DVC project under tmp_path for the DVC tests (the project's own .dvc is never touched)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facekp_cli.cli.main import app


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root, by relative path: byte-identical trees have equal digests."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def new_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: int) -> Path:
    """git init + dvc init as the working directory, no remote, a synthetic set in faces_data/."""
    repo = tmp_path / "project"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    from dvc.repo import Repo

    Repo.init(str(repo)).close()
    monkeypatch.chdir(repo)
    monkeypatch.delenv("FACEKP_DATA__REMOTE", raising=False)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    result = CliRunner().invoke(app, ["data", "synth", "--n", str(images), "--out", "faces_data"])
    assert result.exit_code == 0, result.output
    return repo
