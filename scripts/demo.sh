#!/usr/bin/env bash
# The main job on the embedded default dataset; grows as the commands land.
set -euo pipefail
OUT="${1:-demo_out}"
mkdir -p "$OUT"
facekp --version
facekp config show
