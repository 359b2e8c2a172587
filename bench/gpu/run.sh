#!/usr/bin/env bash
# One GPU session for the PTX backend (prepared here by bench/gpu/pack.sh, carried as .gpu/):
#   1. harness.py: the recorded PTX checks replayed through libcuda with ctypes, then our GEMM and
#      attention timed against cuBLAS and SDPA with PyTorch;
#   2. check.mjs: the PTX runner itself (koffi → libcuda) on every example plan against the
#      float64 golden, and the primitives, with Node from .gpu/node/node.xz when none is installed.
# Results land in $OUT (harness.json, check.json and the logs). Takes about 3 to 5 minutes.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/kvplan-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | tee "$OUT/device.txt"
timeout 300 python3 bench/gpu/harness.py --cases .gpu/cases --out "$OUT/harness.json" --budget-s 200 2>&1 |
  tee "$OUT/harness.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
NODE=$(command -v node || true)
if [ -z "$NODE" ]; then
  NODE=/tmp/kvplan-node
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    .gpu/node/node.xz "$NODE" && chmod +x "$NODE"
fi
"$NODE" --version
timeout 240 "$NODE" .gpu/node/check.mjs --out "$OUT/check.json" 2>&1 | tee "$OUT/check.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
exit $status
