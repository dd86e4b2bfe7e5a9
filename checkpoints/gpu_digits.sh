#!/usr/bin/env bash
# The digit models' GPU session: one script for one short loan of a GPU machine (about nine
# minutes of it), run from the checkout's root there:
#
#   bash checkpoints/gpu_digits.sh OUT [SECONDS]
#
# It expects, beside the checkout's files: .whl/ (wheels of what that machine lacks:
# constriction, pypng, for Python 3.12), .gpu/mnist/*.gz (MNIST's four files, gzipped) and
# .gpu/cpu_files/ (from `python benchmarks/cross_device.py make .gpu/cpu_files`). In
# SECONDS (default 480) of wall time it
#   1. checks the engine on the GPU: tests/test_gated_engine.py's device tests, and
#      benchmarks/cross_device.py's device step (OUT/cross/);
#   2. trains the three digit models of benchmarks/frontier.py at once on the GPU, each from
#      its shipped weights, in float (`arcodec train --set seconds=...`), then
#   3. each from its best float checkpoint through the integer engine's roundings (qat);
# and leaves OUT/float.tar and OUT/qat.tar (each run's best.pt, config.json, log.jsonl,
# curves.png) and OUT/logs.tar. The commands it ran are printed and go to the model cards.
#
# Run once so far (2026-12-04, 431 s; the cross-device step ran out of its 150 s, see
# benchmarks/cross_device.py), then a second call on the same machine gave mnist-gated a
# longer float leg alone on the GPU before its engine leg (185 s and 75 s; the commands in
# arcodec/zoo/mnist-gated.md):
#   arcodec train --init runs/mnist-gated-gpu/best.pt ... --set threads=4 --set lr=5e-4 --set warmup=100 \
#       --set seconds=185 --out runs/mnist-gated-gpu2
#   arcodec train --init runs/mnist-gated-gpu2/best.pt ... --set qat=true --set lr=3e-4 --set warmup=50 \
#       --set seconds=75 --out runs/mnist-gated-gpu2-qat
# (there the runs lay under /tmp/runs, as below; this records them by the names in the cards)
set -u
OUT=${1:?usage: bash checkpoints/gpu_digits.sh OUT [SECONDS]}
BUDGET=${2:-480}
DEVICE=${DEVICE:-cuda}
. checkpoints/gpu_setup.sh

# 1. the engine on the GPU, on an idle GPU
cross_device_step

# 2.-3. float, then qat: the time left split 70 / 30, less each phase's start and the packing
LEFT=$((BUDGET - (SECONDS - START) - 75))
FLOAT=$((LEFT * 7 / 10))
QAT=$((LEFT - FLOAT))
COMMON="--data mnist --set device=$DEVICE --set batch=128 --set steps=1000000 --set val_every=1000 --set threads=2"
for m in mnist-gated mnist-gated-medium mnist-gated-small; do
    train_in_background "$m-gpu" --init "$m" $COMMON --set lr=1e-3 --set warmup=200 --set seconds=$FLOAT
done
wait
echo "float done after $((SECONDS - START)) s"
for m in mnist-gated mnist-gated-medium mnist-gated-small; do
    tail -c 300 "/tmp/runs/$m-gpu.log" | tr '\r' '\n' | tail -2
    train_in_background "$m-gpu-qat" --init "/tmp/runs/$m-gpu/best.pt" $COMMON --set qat=true --set lr=3e-4 --set warmup=50 \
        --set seconds=$QAT
done
wait
echo "qat done after $((SECONDS - START)) s"
for m in mnist-gated mnist-gated-medium mnist-gated-small; do
    tail -c 300 "/tmp/runs/$m-gpu-qat.log" | tr '\r' '\n' | tail -2
done
cd /tmp/runs
tar cf "$OUT/float.tar" --exclude=last.pt ./*-gpu/
tar cf "$OUT/qat.tar" --exclude=last.pt ./*-gpu-qat/
tar cf "$OUT/logs.tar" ./*.log
cat pytest.log | tail -3
echo "all done after $((SECONDS - START)) s"
