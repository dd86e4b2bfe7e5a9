#!/usr/bin/env bash
# The second GPU session's script for the digit models (one short loan, about nine minutes of
# an H200), run from the checkout's root there:
#
#   bash checkpoints/gpu_engine_leg.sh OUT [SECONDS]
#
# It expects, beside the checkout's files: .whl/ (wheels of what that machine lacks:
# constriction, pypng, for Python 3.12), .gpu/mnist/*.gz (MNIST's four files, gzipped) and
# .gpu/cpu_files/ (from `python benchmarks/cross_device.py make .gpu/cpu_files`). In
# SECONDS (default 500) of wall time it
#   1. runs benchmarks/cross_device.py's device step alone on the GPU (OUT/cross/: the CPU's
#      files decoded there, the GPU's own files, the GPU's decode speed), then
#      tests/test_gated_engine.py's device tests in the background;
#   2. trains the shipped mnist-gated further through the integer engine's roundings
#      (--set qat=true), three legs at once from the same weights with three learning rates
#      and batch sizes, each validated through the engine every 500 steps;
# and leaves OUT/qat.tar (each run's best.pt, config.json, log.jsonl, curves.png) and
# OUT/logs.tar. The commands it ran are printed; the chosen one goes to the model card.
#
# Run once so far (2026-12-04, `bash checkpoints/gpu_engine_leg.sh $OUT 520`: 492 s, the
# cross-device step 88 s of it), then a second call on the same machine, 232 s, continued
# legs b and c from their best checkpoints (there the runs lay under /tmp/runs):
#   arcodec train --init runs/mnist-gated-qat-b/best.pt --data mnist --set device=cuda --set qat=true \
#       --set steps=1000000 --set val_every=500 --set threads=4 --set warmup=50 --set seconds=215 \
#       --set batch=256 --set lr=1e-4 --out runs/mnist-gated-qat-b2     (and the same from -c: -c2)
# b2's best checkpoint is mnist-gated id 31 (arcodec/zoo/mnist-gated.md).
set -u
OUT=${1:?usage: bash checkpoints/gpu_engine_leg.sh OUT [SECONDS]}
BUDGET=${2:-500}
DEVICE=${DEVICE:-cuda}
. checkpoints/gpu_setup.sh

# 1. the engine on an idle GPU
cross_device_step

# 2. three engine legs at once, in the time left less the start and the packing
LEFT=$((BUDGET - (SECONDS - START) - 45))
COMMON="--init mnist-gated --data mnist --set device=$DEVICE --set qat=true --set steps=1000000 --set val_every=500"
COMMON="$COMMON --set threads=4 --set warmup=50 --set seconds=$LEFT"
train_in_background mnist-gated-qat-a $COMMON --set batch=128 --set lr=1e-4
train_in_background mnist-gated-qat-b $COMMON --set batch=256 --set lr=2e-4
train_in_background mnist-gated-qat-c $COMMON --set batch=128 --set lr=3e-4
wait
echo "legs done after $((SECONDS - START)) s"
for m in a b c; do
    echo "leg $m:"; grep -o '"val[^}]*' "/tmp/runs/mnist-gated-qat-$m/log.jsonl" | tail -20 | tr '\n' ' '; echo
done
cd /tmp/runs
tar cf "$OUT/qat.tar" --exclude=last.pt ./mnist-gated-qat-*/
tar cf "$OUT/logs.tar" ./*.log
tail -3 pytest.log
echo "all done after $((SECONDS - START)) s"
