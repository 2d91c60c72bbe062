"""Start-up is a feature: help and TAB completion import none of the heavy packages.

Each case runs the real entry point in a fresh interpreter and reports sys.modules at exit.
Speed itself is measured by benchmarks/startup.py, not asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = (
    "torch", "lightning", "pytorch_lightning", "mlflow", "dvc", "albumentations", "cv2", "onnxruntime", "ray",
)  # fmt: skip
# Not forbidden by the design, but each costs tens of milliseconds on every TAB press.
ALSO_AVOIDED = ("numpy", "pydantic", "rich", "PIL", "onnx", "matplotlib")

PROBE = """
import atexit, json, sys
atexit.register(lambda: sys.__stderr__.write("\\nMODULES=" + json.dumps(sorted(sys.modules)) + "\\n"))
sys.argv = ["facekp", *json.loads(sys.argv[1])]
from facekp_cli.cli.main import main
main()
"""


def loaded_modules(args: list[str], env: dict[str, str] | None = None) -> set[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FACEKP_")}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )
    marker = [line for line in proc.stderr.splitlines() if line.startswith("MODULES=")]
    assert marker, proc.stderr
    return {name.split(".")[0] for name in json.loads(marker[-1][len("MODULES=") :])}


def completion_env(words: str) -> dict[str, str]:
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    return {"_FACEKP_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}


VERBS = ("data", "train", "infer", "eval", "export", "config", "overlay", "align")
CASES = [
    pytest.param(["--help"], None, id="facekp --help"),
    pytest.param(["--version"], None, id="facekp --version"),
    *(pytest.param([verb, "--help"], None, id=f"facekp {verb} --help") for verb in VERBS),
    pytest.param([], completion_env("facekp tr"), id="complete verb"),
    pytest.param([], completion_env("facekp --"), id="complete global option"),
    pytest.param([], completion_env("facekp --config "), id="complete config path"),
    *(pytest.param([], completion_env(f"facekp {verb} --"), id=f"complete {verb} options") for verb in VERBS),
]


@pytest.mark.parametrize(("args", "env"), CASES)
def test_no_heavy_imports(args, env):
    loaded = loaded_modules(args, env)
    assert "facekp_cli" in loaded  # the probe really ran the CLI
    heavy = sorted(loaded.intersection(HEAVY))
    assert not heavy, f"`facekp {' '.join(args)}` imported {heavy}"


@pytest.mark.parametrize(
    ("args", "env"),
    [
        pytest.param(["--help"], None, id="facekp --help"),
        pytest.param(["train", "--help"], None, id="facekp train --help"),
        pytest.param([], completion_env("facekp tr"), id="complete verb"),
    ],
)
def test_help_and_verb_completion_stay_light(args, env):
    loaded = loaded_modules(args, env)
    light = sorted(loaded.intersection(ALSO_AVOIDED))
    assert not light, f"`facekp {' '.join(args)}` imported {light}"
