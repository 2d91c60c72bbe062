#!/usr/bin/env bash
# `make bench`: every benchmark, each writing its own page under docs/bench/ (summary: docs/BENCHMARKS.md).
# Add a line per benchmark script; each must finish on its own and exit non-zero when it misses its target.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
run() { echo "== $*"; "$@" || status=1; }

run python benchmarks/startup.py
run python benchmarks/infer_throughput.py  # ~10 min on 2 busy cores: docs/bench/infer.md
run python benchmarks/infer_load.py  # ~4 min: 20,000 files, 1% corrupt: docs/bench/reliability.md
# video needs a trained model (an untrained one loses every face): the one `make demo` leaves
if [ -f demo_out/best.ckpt ]; then
  run python benchmarks/video.py --ckpt demo_out/best.ckpt --onnx demo_out/model.onnx  # ~15 min: docs/bench/video.md
else
  echo "== benchmarks/video.py skipped: run make demo first (it needs demo_out/best.ckpt)"
fi
# (more benchmarks are added here as the commands land)

exit $status
