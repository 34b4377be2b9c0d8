#!/usr/bin/env bash
# ONE device call (issue 37 item 6), in this order:
#   1. the NCSN sampler benchmark beside PyTorch on the published architectures (CIFAR-10,
#      F = 128, then MNIST, F = 64; configs/benchmark_ncsn.py), at most BENCH_S seconds in
#      all; each benchmark rewrites its table after every row, so a cut one keeps its rows;
#   2. for the rest of the call, a larger CIFAR-10 prior trained from scratch
#      (configs/train_score_unet_cifar10.py:large, widths 48/96/192, 3.6M parameters) until
#      its max_seconds, then its state and its EMA export packed for committing.
#
# Prepare here first (the GPU machine lacks ml_collections and clu; ../shared does not travel):
#   mkdir -p .gpu-run/wheels  # .gpu-run/ is git-ignored
#   cp ../shared/device/wheels-py312/{ml_collections,clu}-*.whl .gpu-run/wheels/
#   cp ../shared/data/cifar10/cifar10_jpeg_q75.npz .gpu-run/
# then through the device tool, with carry=[".gpu-run"] and timeout_s = BUDGET_S + 30:
#   bash studies/gpu/benchmark_and_train_cifar10.sh
# Back under $OUT: results.tar (bench_cifar10/ and bench_mnist/ benchmark.{md,json};
# train/ metrics.jsonl and config.json), state.npz.part-* (the training state, params and
# EMA, under the 16 MiB file limit: `cat state.npz.part-* > weights.npz`),
# score_unet_cifar10_large.npz (EMA weights, for --config.prior.weights), logs.tar.gz,
# gpu.txt.
#
# Tested end to end on the CPU with tiny settings first (the command is in
# docs/score_unet_cifar10.md): BUDGET_S=240 BENCH_S=60 BENCH=:smoke
# TRAIN_EXTRA="--config.model.widths=(8,16,16) --config.training.batch_size=8 --config.heldout_every=0"
# PY=python3 OUT=/tmp/out W=/tmp/gpu-work.
set -uo pipefail
BUDGET_S=${BUDGET_S:-560} BENCH_S=${BENCH_S:-180} BENCH=${BENCH:-} TRAIN_EXTRA=${TRAIN_EXTRA:-}
# max_seconds counts from the first step: data loading (decoding 50,000 JPEGs, ~35 s on
# the 2-core CPU) and compiling come before it.
STARTUP_S=${STARTUP_S:-60}
source studies/gpu/common.sh

# 1. The benchmarks: CIFAR-10 first (the figure BENCHMARKS.md lacks on a GPU), half each.
run_benchmarks

# 2. The larger prior, from scratch, until 60 s before the end (export and packing after).
train_s=$(( $(left) - 60 - STARTUP_S ))
if (( train_s < 20 )); then echo "training skipped: no time left" >> "$W/logs/stages.txt"; else
  timeout $(( train_s + STARTUP_S + 30 )) $PY -m experiments.train \
    --config=configs/train_score_unet_cifar10.py:large \
    --config.data.path=.gpu-run/cifar10_jpeg_q75.npz --config.sampling.every=0 \
    --config.checkpoint_every=100000 --config.max_seconds="$train_s" $TRAIN_EXTRA \
    --workdir="$W/train" > "$W/logs/train.log" 2>&1
  echo "train exit $? at $((SECONDS - start)) s" >> "$W/logs/stages.txt"
  mkdir -p "$W/results/train"
  cp "$W/train"/{metrics.jsonl,config.json} "$W/results/train/" 2>/dev/null
  [[ -f "$W/train/weights.npz" ]] && split -b 15M -d "$W/train/weights.npz" "$OUT/state.npz.part-"
  timeout 30 $PY -m experiments.export_weights --state="$W/train/weights.npz" \
    --out="$OUT/score_unet_cifar10_large.npz" > "$W/logs/export.log" 2>&1
  echo "export exit $? at $((SECONDS - start)) s" >> "$W/logs/stages.txt"
fi
pack
echo "done at $((SECONDS - start)) s" | tee -a "$W/logs/stages.txt"
