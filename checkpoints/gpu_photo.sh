#!/usr/bin/env bash
# The photo models' GPU script (one short loan of an H200), run from the checkout's root there:
#
#   bash checkpoints/gpu_photo.sh OUT [PHASE1_SECONDS] [PHASE2_SECONDS]
#
# It expects, beside the checkout's files: .whl/ (wheels of what that machine lacks, for
# Python 3.12: pypng reads the photos) and .gpu/photos/ (python checkpoints/pack_photos.py
# .gpu/photos: the validation photos whole, the training photos cut to part of their area,
# the same names, so the same split). Three runs at once on the one GPU, each grown from the
# shipped photo-rgb (which they compute exactly at their start, LocalPhoto.grow_from):
#   a: the same size (128 channels, 4 blocks): what more steps alone give;
#   b: 192 channels, 4 blocks;   c: 256 channels, 4 blocks;
# phase 1 trains them on crops half of them 4:2:0 (as photo-rgb), phase 2 fine-tunes each
# one's best checkpoint on crops all 4:2:0 (as photo-rgb-420 from photo-rgb). It leaves
# OUT/runs.tar (each run's best.pt, config.json, log.jsonl) and OUT/logs.tar; the commands it
# ran are printed, and go to the model cards.
#
# Run once so far (2026-12-04, `bash checkpoints/gpu_photo.sh $OUT 270 150` with .whl and
# .gpu/photos carried: 479 s; phase 1 best validations a 2.9449, b 2.9425, c 2.9412; phase 2
# a 2.3958, b 2.3918, c 2.3917). The working tree that travels is at most 64 MiB: for that
# call the files the GPU does not read (the zoo's other weights, checkpoints/photo-rgb*,
# docs/, benchmarks/results/, tests/golden/) were taken out of git's index and ignored, and
# put back after. A second call on the same machine (244 s, runs/ kept there) trained on:
#   arcodec train --init runs/photo-a/best.pt ... --set chroma=0.5 --set lr=1e-4 --set warmup=50 --set seconds=215 --out runs/photo-a2
#   arcodec train --init runs/photo-a-420/best.pt ... --set chroma=1.0 --set lr=5e-5 --set warmup=50 --set seconds=215 --out runs/photo-a-420b
#   arcodec train --init photo-rgb-420 ... --set chroma=1.0 --set lr=5e-5 --set warmup=50 --set seconds=215 --out runs/photo-x
# (... the COMMON settings below); photo-a2 is photo-rgb id 32, photo-a-420b photo-rgb-420 id 33.
set -u
OUT=${1:?usage: bash checkpoints/gpu_photo.sh OUT [PHASE1_SECONDS] [PHASE2_SECONDS]}
P1=${2:-270}
P2=${3:-150}
DEVICE=${DEVICE:-cuda}
RUNS=runs  # in the checkout there: the runs' --init paths are relative, as the cards record them
. checkpoints/gpu_setup.sh

COMMON="--data folder:.gpu/photos --set device=$DEVICE --set steps=1000000 --set crop=48 --set crops=4096"
COMMON="$COMMON --set flip=true --set val_limit=1024 --set val_every=250 --set threads=4 --set batch=128"
show() {
    for m in "$@"; do
        echo "$m: $(tail -1 "runs/$m.log" | cut -c1-200)"
        grep -o '"val_bpd": [0-9.]*' "runs/$m/log.jsonl" | cut -d' ' -f2 | cut -c1-6 | tr '\n' ' '; echo
    done
}

P1SET="--set chroma=0.5 --set lr=2e-4 --set warmup=100 --set seconds=$P1"
train_in_background photo-a $COMMON --init photo-rgb $P1SET
train_in_background photo-b $COMMON --init photo-rgb --set hidden=192 $P1SET
train_in_background photo-c $COMMON --init photo-rgb --set hidden=256 $P1SET
wait
echo "phase 1 done after $((SECONDS - START)) s"; show photo-a photo-b photo-c

P2SET="--set chroma=1.0 --set lr=1e-4 --set warmup=50 --set seconds=$P2"
for m in a b c; do
    [ -f "runs/photo-$m/best.pt" ] && train_in_background "photo-$m-420" $COMMON --init "runs/photo-$m/best.pt" $P2SET
done
wait
echo "phase 2 done after $((SECONDS - START)) s"; show photo-a-420 photo-b-420 photo-c-420

cd runs
tar cf "$OUT/runs.tar" --exclude=last.pt ./photo-*/
tar cf "$OUT/logs.tar" ./*.log
nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null
echo "all done after $((SECONDS - START)) s"
