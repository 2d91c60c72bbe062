"""Load, small: `facekp infer` over 300 files, 3 corrupt, reports exactly those 3 and exits 4.

The full-size check (20,000 files, 1% corrupt, flat memory) is benchmarks/infer_load.py, whose
file maker this test reuses; results in docs/bench/reliability.md.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from typer.testing import CliRunner

from facekp_cli.cli.main import app
from facekp_cli.errors import ExitCode

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "infer_load.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("infer_load", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_300_files_with_3_corrupt_report_exactly_those(tmp_path, tiny_dataset, tiny_checkpoint):
    bench = _bench_module()
    distinct = sorted((tiny_dataset / "train" / "images").glob("*.jpg"))
    bad = bench.make_corpus(tmp_path / "images", 300, 3, distinct, seed=1)
    bad |= bench.make_corpus(tmp_path / "more", 4, 4, distinct, seed=2)  # one of each corrupt kind
    assert len(bad) == 7
    out = tmp_path / "preds.json"
    args = [
        "-q",
        "infer",
        "--no-detect",
        str(tmp_path / "images"),
        str(tmp_path / "more"),
        "--ckpt",
        str(tiny_checkpoint),
    ]
    result = CliRunner().invoke(app, [*args, "-o", str(out), "-b", "16"])
    assert result.exit_code == ExitCode.PARTIAL, result.output
    payload = json.loads(out.read_text())
    errors = {entry["path"]: entry["error"] for entry in payload["images"] if "error" in entry}
    assert set(errors) == bad
    assert all(path in message for path, message in errors.items())  # each error names its file
    assert len(payload["images"]) == 304 and payload["summary"]["failed"] == 7
    assert all(len(e["points"]) == 14 for e in payload["images"] if "error" not in e)
    skipped = [line for line in result.stderr.splitlines() if line.startswith("facekp: skipped ")]
    assert len(skipped) == 7 and all(any(path in line for line in skipped) for path in bad)
    assert result.stderr.strip().splitlines()[-1] == f"facekp: 7 of 304 files skipped (listed in {out})"
    assert "Traceback" not in result.output
