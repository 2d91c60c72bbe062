"""Time `synthesize(n=6000)`: the embedded default set must build in under 60 s on 2 cores.

Usage: .venv/bin/python benchmarks/synth_speed.py [--n 6000] [--workers N] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
from pathlib import Path

from facekp_cli.data.synth.generator import GENERATOR_VERSION, synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="default: all cores")
    parser.add_argument("--out", type=Path, default=None, help="keep the set here (default: a temp dir)")
    args = parser.parse_args()
    tmp = None if args.out else Path(tempfile.mkdtemp(prefix="synth_speed."))
    out = args.out or tmp / "faces_data"
    try:
        load = os.getloadavg()[0]
        result = synthesize(out, args.n, seed=args.seed, workers=args.workers)
        # CPU time of parent and workers: independent of what else runs on the machine.
        cpu = sum(
            getattr(resource.getrusage(who), field)
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
            for field in ("ru_utime", "ru_stime")
        )
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        workers = args.workers or os.cpu_count()
        print(
            f"generator v{GENERATOR_VERSION}: {args.n} images "
            f"({result.train_count} train, {result.test_count} test) "
            f"in {result.seconds:.1f} s with {workers} workers = {args.n / result.seconds:.0f} img/s; "
            f"{size / 1e6:.1f} MB on disk; {cpu:.1f} CPU-s in all; load average before {load:.1f}"
        )
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
