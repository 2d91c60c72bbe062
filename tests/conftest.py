"""Shared fixtures: a tiny synthetic dataset made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_DATASET_SIZE = 48


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a 48-image synthetic dataset (seed 0): faces_data-style train/ and test/ splits."""
    from facekp_cli.data.synth.generator import synthesize

    root = tmp_path_factory.mktemp("tiny_dataset") / "faces_data"
    synthesize(root, TINY_DATASET_SIZE, seed=0, test_fraction=0.25, workers=1)
    return root
