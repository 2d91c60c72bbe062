#!/usr/bin/env bash
# `make demo`: the whole loop on the embedded default dataset, in one folder:
# data synth -> validate -> train (short) -> eval -> export (ONNX, verified) -> infer (both backends)
# -> eval of the predictions file. Under 10 minutes on 2 CPU cores, installation aside.
set -euo pipefail
OUT="${1:-demo_out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# Everything the demo writes stays under $OUT, including the MLflow store and the stable best.ckpt.
export FACEKP_DATA__ROOT="$OUT/faces_data"
export FACEKP_TRAIN__OUT_DIR="$OUT/runs"
export FACEKP_TRAIN__BEST_PATH="$OUT/best.ckpt"
export FACEKP_TRACKING__URI="sqlite:///$OUT/mlflow.db"
# A short CPU run: a smaller network input and width than the defaults (96 px, width 64), so that
# a few epochs fit the time budget. The default recipe's numbers are in docs/BENCHMARKS.md.
SHORT=(--set model.input_size=64 --set model.width=32)
EPOCHS="${DEMO_EPOCHS:-12}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
start=$SECONDS

step "facekp data synth (the embedded default: 6000 synthetic face crops, seed 0)"
facekp data synth --n 6000 --seed 0 --out "$OUT/faces_data"

step "facekp data validate"
facekp data validate "$OUT/faces_data"

step "facekp data show --augment"
facekp data show "$OUT/faces_data" --n 6 --augment --out "$OUT/samples.png"

step "facekp train --epochs $EPOCHS (short CPU run)"
facekp "${SHORT[@]}" train --epochs "$EPOCHS" --run-name demo

step "facekp eval --ckpt best.ckpt"
facekp eval --ckpt "$OUT/best.ckpt" --out "$OUT/report.json" --plots "$OUT/plots"

step "facekp export --format onnx (verified against PyTorch)"
facekp export --ckpt "$OUT/best.ckpt" --format onnx --out "$OUT/model.onnx"

step "facekp infer (PyTorch checkpoint, JSON, drawings)"
facekp infer "$OUT/faces_data/test/images" --no-detect --ckpt "$OUT/best.ckpt" --out "$OUT/preds.json" --draw "$OUT/drawn"

step "facekp infer (ONNX Runtime, gt.csv format)"
facekp infer "$OUT/faces_data/test/images" --no-detect --model "$OUT/model.onnx" --out "$OUT/preds.csv"

step "facekp eval --pred preds.csv (closing the loop)"
facekp eval --pred "$OUT/preds.csv" --gt "$OUT/faces_data/test/gt.csv"

step "done in $((SECONDS - start)) s; outputs in $OUT"
echo "MLflow runs: mlflow ui --backend-store-uri sqlite:///$OUT/mlflow.db"
