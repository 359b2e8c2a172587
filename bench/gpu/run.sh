#!/usr/bin/env bash
# One GPU session for the PTX backend (prepared here by bench/gpu/pack.sh, carried as .gpu/):
#   harness   harness.py: the recorded PTX checks replayed through libcuda with ctypes, then our
#             GEMM and attention timed against cuBLAS and SDPA with PyTorch;
#   check     check.mjs: the PTX runner itself (koffi → libcuda) on every example plan against the
#             float64 golden, and the primitives;
#   generate  generate.mjs: whole generations on an SDAR-1.7B-shaped model with random bf16
#             weights, tokens/s and a per-kernel profile of a step, on both GEMM paths.
# `bash bench/gpu/run.sh [part...]` runs the parts named (default: all three, about 5 minutes).
# Node comes from .gpu/node/node.xz when none is installed. Results land in $OUT (harness.json,
# check.json, generate.json and the logs).
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/kvplan-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
parts=${*:-harness check generate}
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee "$OUT/device.txt"
if [[ " $parts " == *" harness "* ]]; then
  timeout 300 python3 bench/gpu/harness.py --cases .gpu/cases --out "$OUT/harness.json" --budget-s 200 2>&1 |
    tee "$OUT/harness.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
NODE=$(command -v node || true)
if [ -z "$NODE" ]; then
  NODE=/tmp/kvplan-node
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    .gpu/node/node.xz "$NODE" && chmod +x "$NODE"
fi
"$NODE" --version
for part in check generate; do
  [[ " $parts " == *" $part "* ]] || continue
  timeout 300 "$NODE" --max-old-space-size=8192 ".gpu/node/$part.mjs" --out "$OUT/$part.json" 2>&1 | tee "$OUT/$part.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
done
exit $status
