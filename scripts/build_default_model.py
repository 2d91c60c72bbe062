"""Rebuild the model facekp ships (facekp_cli/model/shipped/facekp-default.ckpt), from facekp's own
synthetic faces only: no real face is read, so the result may be redistributed.

    make default-model            # or: .venv/bin/python scripts/build_default_model.py

1. `facekp data synth` with RECIPE's n and seed into WORK/faces_data (reused when WORK already holds
   that exact set: same generator version, n, seed, split and shape model);
2. DVC's md5 of that folder (what `dvc add` records; written to WORK/faces_data.dvc, so training
   records it as the model's data_hash);
3. `facekp train` with RECIPE's settings (seeded; the same bytes where the CPU backend allows);
4. the best checkpoint (EMA weights), training state dropped, float weights stored as fp16, the
   recipe, generator version and data md5 added to its metadata -> the package file;
5. its ONNX twin beside it (`facekp export` with fp16 weights, verified against the checkpoint on
   the synthetic test faces): what CPU inference runs, without importing torch.

Everything except the package file stays under WORK (default build/default_model, git-ignored).
The model card (docs/MODEL_CARD.md) has the recipe's accuracy on real faces and how it was chosen.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's facekp_cli, whatever is installed

# The recipe: chosen by measurement on real faces (docs/MODEL_CARD.md says how many were compared).
RECIPE: dict = {
    "synth": {"n": 24000, "seed": 0, "test_fraction": 0.1},
    "settings": {
        "model.input_size": 96,
        "model.width": 32,
        "train.epochs": 18,
        "train.seed": 0,
        "train.swa_from": 0.5,
        "train.batch_size": 32,
    },
    # One torch thread: the same float sums whatever the machine, and on a shared, overloaded CPU
    # 16x the images per CPU-second of two threads (measured at load 34: 198 vs 12 img/CPU-s).
    "threads": 1,
    "store": "fp16",  # float weights as float16 in the file (half the size), float32 once loaded
}


def facekp(args: list[str], env: dict[str, str], cwd: Path) -> None:
    command = [sys.executable, "-m", "facekp_cli", *args]
    print("+", shlex.join(["facekp", *args]), flush=True)
    subprocess.run(command, env=env, cwd=cwd, check=True)


def same_synth_set(folder: Path, synth: dict) -> bool:
    """WORK already holds the recipe's set (the md5 below still decides what is recorded)."""
    from facekp_cli.data.synth.generator import GENERATOR_VERSION, META_FILE
    from facekp_cli.data.synth.shape import default_shape_model

    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    wanted = {"version": GENERATOR_VERSION, "n": synth["n"], "seed": synth["seed"],
              "test_fraction": synth["test_fraction"]}  # fmt: skip
    return all(meta.get(k) == v for k, v in wanted.items()) and (
        meta.get("shape_model", {}).get("digest") == default_shape_model().digest()
    )


def data_md5(folder: Path) -> str:
    """DVC's directory hash, as `dvc add` / faces_data.dvc record it."""
    from dvc.repo import Repo

    from facekp_cli.data.synth.rebuild import directory_md5

    with Repo(str(ROOT)) as repo:
        return directory_md5(repo, folder)


def shrink(checkpoint: dict, store: str) -> dict:
    """Weights and metadata only; float tensors as fp16 (load_state_dict casts them back)."""
    import torch

    from facekp_cli.model.checkpoint import FACEKP_KEY

    half = store == "fp16"
    weights = {
        k: (v.to(torch.float16) if half and v.is_floating_point() else v)
        for k, v in checkpoint["state_dict"].items()
    }
    return {"state_dict": weights, FACEKP_KEY: checkpoint[FACEKP_KEY]}


def train(data: Path, work: Path, env: dict[str, str]) -> None:
    synth, settings = RECIPE["synth"], RECIPE["settings"]
    if same_synth_set(data, synth):
        print(f"reusing {data} (n {synth['n']}, seed {synth['seed']})", flush=True)
    else:
        facekp(["data", "synth", "--n", str(synth["n"]), "--seed", str(synth["seed"]),
                "--test-fraction", str(synth["test_fraction"]), "--out", str(data)], env, work)  # fmt: skip
    md5 = data_md5(data)
    (work / "faces_data.dvc").write_text(f"outs:\n- md5: {md5}\n  hash: md5\n  path: faces_data\n")
    print(f"data md5 (DVC): {md5}", flush=True)
    sets = [a for key, value in settings.items() for a in ("--set", f"{key}={value}")]
    run = work / "runs" / f"default-{md5[:8]}"
    if run.is_dir():  # this script's own earlier build under WORK: a rebuild starts it afresh
        import shutil

        shutil.rmtree(run)
    facekp([*sets, "train", "--run-name", run.name], env, work)


def package(best: Path, out: Path, md5: str) -> dict:
    """The package file from training's best checkpoint; returns its metadata."""
    import torch

    from facekp_cli import __version__
    from facekp_cli.atomic import atomic_path
    from facekp_cli.data.synth.generator import GENERATOR_VERSION
    from facekp_cli.model.checkpoint import FACEKP_KEY, read_checkpoint_dict
    from facekp_cli.provenance import git_commit

    checkpoint = read_checkpoint_dict(best)
    meta = checkpoint[FACEKP_KEY]
    if meta.get("data_hash") != md5:
        raise SystemExit(f"{best}: training recorded data hash {meta.get('data_hash')}, expected {md5}")
    meta["build_info"] = {
        "trained_on": "facekp data synth output only (no real faces)",
        "recipe": RECIPE,
        "generator_version": GENERATOR_VERSION,
        "data_md5": md5,
        "command": "make default-model (scripts/build_default_model.py)",
        "built_with": {"facekp": __version__, "git_commit": git_commit(), "torch": str(torch.__version__)},
    }
    with atomic_path(out) as tmp:
        torch.save(shrink(checkpoint, RECIPE["store"]), tmp)
    return meta


def write_twin(ckpt: Path, data: Path, env: dict[str, str]) -> Path:
    """The ONNX twin next to the package file, through the export a user runs (verification included)."""
    twin = ckpt.with_suffix(".onnx")
    facekp(["--set", "export.fp16_weights=true", "export", "--ckpt", str(ckpt), "--format", "onnx",
            "--out", str(twin), "--data", str(data / "test")], env, ckpt.parent)  # fmt: skip
    return twin


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "default_model")
    parser.add_argument("--out", type=Path, default=None, help="default: the package's shipped model file")
    parser.add_argument("--n", type=int, default=None, help="override the recipe's n (smoke tests)")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (smoke tests)")
    parser.add_argument(
        "--package-only", action="store_true", help="skip synth and training: package WORK/best.ckpt again"
    )
    parser.add_argument("--from-ckpt", type=Path, default=None, help="with --package-only: this checkpoint")
    args = parser.parse_args()
    if args.n is not None:
        RECIPE["synth"]["n"] = args.n
    if args.epochs is not None:
        RECIPE["settings"]["train.epochs"] = args.epochs

    from facekp_cli.model.resolve import default_checkpoint_path

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = args.out or default_checkpoint_path()
    data = work / "faces_data"
    # Only the recipe decides: no conf.toml (cwd is WORK), no FACEKP_* from the caller's shell.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEKP_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        FACEKP_DATA__ROOT=str(data),
        FACEKP_TRAIN__OUT_DIR=str(work / "runs"),
        FACEKP_TRAIN__BEST_PATH=str(work / "best.ckpt"),
        FACEKP_TRACKING__ENABLED="false",
        OMP_NUM_THREADS=str(RECIPE["threads"]),
        MKL_NUM_THREADS=str(RECIPE["threads"]),
    )
    started = time.perf_counter()
    if not args.package_only:
        train(data, work, env)
    meta = package(args.from_ckpt or work / "best.ckpt", out, data_md5(data))
    twin = write_twin(out, data, env)
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, best epoch {meta.get('epoch')}, "
        f"synthetic val NME {meta.get('metrics', {}).get('val_nme', float('nan')):.3f} %) and {twin.name} "
        f"({twin.stat().st_size / 1e6:.2f} MB) "
        f"in {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
