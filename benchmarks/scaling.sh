#!/usr/bin/env bash
# How cost grows with the work, on this machine: dcgan bench over batch sizes 16 to 256 for
# mnist28, svhn32 and dcgan64 (one JSON per preset, so a stopped sweep starts again at the
# preset it was in), then data-parallel widths 1 and 2 (per-device BN statistics there, on every backend); then the plots and table
# (benchmarks/scaling.py). Float32, each backend's default mode, no peak measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/scaling}
DEVICE=${DEVICE:-cpu}
MODES=(torch-eager jax-jit keras-tensorflow keras-jax keras-torch)
mkdir -p "$OUT"
for preset in mnist28 svhn32 dcgan64; do
    [ -f "$OUT/$DEVICE-$preset.json" ] && continue
    .venv/bin/dcgan bench --device "$DEVICE" --preset "$preset" --batch-size 16 32 64 128 256 \
        --modes "${MODES[@]}" --repeats 3 --warmup 1 --no-peak \
        --json "$OUT/$DEVICE-$preset.json" --markdown "$OUT/$DEVICE-$preset.md"
done
[ -f "$OUT/$DEVICE-devices.json" ] || .venv/bin/dcgan bench --device "$DEVICE" --preset mnist28 dcgan64 \
    --batch-size 64 --devices 1 2 --modes torch-eager jax-jit keras-tensorflow keras-jax --repeats 3 --warmup 1 --no-peak \
    --json "$OUT/$DEVICE-devices.json" --markdown "$OUT/$DEVICE-devices.md"
.venv/bin/python -m benchmarks.scaling "$OUT/$DEVICE"-*.json
