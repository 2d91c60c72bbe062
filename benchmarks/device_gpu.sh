#!/usr/bin/env bash
# Issue 22, part 2, on the lent GPU machine (../shared/device/README.md): the default recipe for 40
# epochs on the real set with the batched augmentation backend, with `nvidia-smi dmon` SM
# utilisation, then `facekp infer --device cuda` throughput on real face crops. Prints its figures
# and copies small result files to $OUT.
#
# Prepare here (from the repository root):  bash ../shared/device/bundle.sh --with-real
# Run there with carry [".whl", ".devdata"] and timeout_s ~540:
#   bash benchmarks/device_gpu.sh
# Check the non-GPU parts here first (no bundle, CPU, a tiny budget):
#   LOCAL=1 DEVICE=cpu EPOCHS=1 COPIES=1 LIMIT=300 TRAIN_SETS="model.input_size=32 model.width=16" \
#     OUT=/tmp/facekp-device-check bash benchmarks/device_gpu.sh
set -u
EPOCHS=${EPOCHS:-40}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-14}       # 16 cores there
COPIES=${COPIES:-4}          # real crops are listed this many times for infer (5.4k x 4 = 21.6k)
LIMIT=${LIMIT:-0}            # >0: train on only this many faces (the local check)
TRAIN_SETS=${TRAIN_SETS:-}   # extra key=value overrides for training
OUT=${OUT:?set OUT}
mkdir -p "$OUT"
if [ -z "${LOCAL:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH || exit 9
  PY=python3
else
  PY=.venv/bin/python; PATH=$PWD/.venv/bin:$PATH
fi
DATA=${DATA:-.devdata/facepoints}
for d in ../shared ../../shared; do [ -d "$DATA" ] || DATA=$d/realdata/facepoints; done
work=$(mktemp -d /tmp/facekp-device-XXXX)
log="$OUT/summary.txt"
say() { echo "$*" | tee -a "$log"; }
say "$(date -u +%FT%TZ) data=$DATA device=$DEVICE epochs=$EPOCHS workers=$WORKERS nproc=$(nproc) load=$(cut -d' ' -f1 /proc/loadavg)"
$PY - <<'EOF' 2>&1 | tee -a "$log"
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
try:  # nvJPEG decoding for infer, if this image's torchvision matches its torch
    import torchvision
    from torchvision.io import decode_jpeg
    print("torchvision", torchvision.__version__, "decode_jpeg available")
except Exception as exc:
    print("torchvision not usable:", repr(exc)[:200])
EOF

if [ "$LIMIT" -gt 0 ]; then  # a smaller copy of the set (hard links) for the local check
  $PY benchmarks/real_split.py "$DATA" "$work/limited" --test "$(( $(wc -l < "$DATA/gt.csv") - 1 - LIMIT ))" >/dev/null
  DATA="$work/limited/train"
fi

dmon() {  # SM utilisation every second while the command runs
  if command -v nvidia-smi >/dev/null; then nvidia-smi dmon -s u -d 1 > "$1" 2>&1 & echo $!; else echo 0; fi
}
mean_sm() {  # mean SM % over the samples (dmon's 2nd column), or "-" without a GPU
  [ -s "$1" ] && awk '$1 !~ /^#/ && $2 ~ /^[0-9]+$/ {s += $2; n++} END {if (n) printf "%.0f %% over %d s", s / n, n; else print "-"}' "$1" || echo "-"
}

# 1. Training: default recipe (96 px, width 64, batch 32), batched augmentation on the GPU.
sets=(--set tracking.enabled=false --set "train.out_dir=$work/runs" --set "train.best_path=$work/best.ckpt"
      --set augment.backend=batched --set "data.num_workers=$WORKERS" --set "train.epochs=$EPOCHS"
      --set train.early_stop_patience=0)
[ "$DEVICE" = cpu ] && sets+=(--set train.accelerator=cpu)
for kv in $TRAIN_SETS; do sets+=(--set "$kv"); done
pid=$(dmon "$OUT/dmon_train.txt")
start=$(date +%s.%N)
facekp "${sets[@]}" train --data "$DATA" --no-tracking --run-name device > "$OUT/train.log" 2>&1
rc=$?
train_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
[ "$pid" != 0 ] && kill "$pid"
say "train rc=$rc: $EPOCHS epochs in ${train_s} s (process start to exit), SM utilisation $(mean_sm "$OUT/dmon_train.txt")"
$PY - "$work/best.ckpt" <<'EOF' 2>&1 | tee -a "$log"
import sys, torch
meta = torch.load(sys.argv[1], map_location="cpu", weights_only=True)["facekp"]
print("best checkpoint: epoch", meta["epoch"], "metrics", {k: round(v, 4) for k, v in meta["metrics"].items()})
EOF

# 2. Inference on real crops, end to end (decode in processes, pinned batches), fp32.
mkdir -p "$work/crops"
n=0
for copy in $(seq 1 "$COPIES"); do
  for f in "$DATA"/images/*; do ln "$f" "$work/crops/$copy-$(basename "$f")" 2>/dev/null || cp "$f" "$work/crops/$copy-$(basename "$f")"; n=$((n + 1)); done
done
for batch in 256 1024; do
  pid=$(dmon "$OUT/dmon_infer_$batch.txt")
  start=$(date +%s.%N)
  facekp --set "infer.num_workers=$WORKERS" infer "$work/crops" --no-detect --ckpt "$work/best.ckpt" --device "$DEVICE" \
    -b "$batch" --out "$work/pred_$batch.jsonl" > "$OUT/infer_$batch.log" 2>&1
  rc=$?
  infer_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  [ "$pid" != 0 ] && kill "$pid"
  # JSON Lines: a header line, one line per image, a summary line.
  rows=$(( $(wc -l < "$work/pred_$batch.jsonl" 2>/dev/null || echo 2) - 2 ))
  say "infer batch $batch rc=$rc: $rows of $n crops in ${infer_s} s = $(awk -v r="$rows" -v s="$infer_s" 'BEGIN {printf "%.0f", r / s}') img/s end to end (process start included), SM $(mean_sm "$OUT/dmon_infer_$batch.txt")"
done
rm -rf "$work"
say "done $(date -u +%FT%TZ)"
