"""Shared fixtures: a tiny synthetic dataset made once per test session, and a real S3 endpoint."""

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


@pytest.fixture()
def s3_server(monkeypatch):
    """A real S3 endpoint: moto's server on 127.0.0.1, the AWS_* environment pointing at it.

    Yields (endpoint URL, boto3 client); used by the DVC remote tests and the Ray S3 input test.
    """
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield endpoint, boto3.client("s3", endpoint_url=endpoint)
    server.stop()
