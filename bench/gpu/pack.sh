#!/usr/bin/env bash
# Fills .gpu/ (git-ignored) with what bench/gpu/run.sh needs on a GPU machine, where Node may be
# missing: the driver-call traces and PTX files for harness.py, the Node check and the generation
# benchmark bundled into one file each with koffi beside them, and this machine's Node binary,
# compressed (about 24 MB; made once).
# Then: the device tool's run with carry [".gpu"], see docs/ptx-backend.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=.gpu
npx tsx bench/gpu/prepare.ts "$G/cases"
mkdir -p "$G/node"
for entry in check generate; do
  npx esbuild "bench/gpu/$entry.ts" --bundle --platform=node --format=esm --target=node20 --external:koffi \
    --banner:js="import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" \
    --outfile="$G/node/$entry.mjs" --log-level=warning
done
# koffi finds its native module at ../../../@koromix/koffi-<platform> from its own sources.
rm -rf "$G/node/node_modules"
mkdir -p "$G/node/node_modules/@koromix"
cp -r node_modules/koffi "$G/node/node_modules/koffi"
cp -r node_modules/@koromix/koffi-linux-x64 "$G/node/node_modules/@koromix/koffi-linux-x64"
node_bin=$(readlink -f "$(command -v node)")
if [ ! -s "$G/node/node.xz" ] || [ "$node_bin" -nt "$G/node/node.xz" ]; then
  xz -T0 -6 -c "$node_bin" > "$G/node/node.xz.part"
  mv "$G/node/node.xz.part" "$G/node/node.xz"
fi
# The bundle must run before it travels: the same checks on the emulator (about half a minute).
node "$G/node/check.mjs" --emulator > "$G/node/emulator.log" || { tail -20 "$G/node/emulator.log"; exit 1; }
tail -1 "$G/node/emulator.log"
node "$G/node/generate.mjs" --emulator --preset tiny --gen 16 --prompt 8 > "$G/node/generate-emulator.log" ||
  { tail -20 "$G/node/generate-emulator.log"; exit 1; }
du -sh "$G"
