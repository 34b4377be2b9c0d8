#!/usr/bin/env bash
# ONE device call for issue 34 (Glow), in this order:
#   1. the NCSN sampler benchmark beside PyTorch (CIFAR-10, then MNIST; configs/benchmark_ncsn.py),
#      at most BENCH_S seconds in all; each benchmark rewrites its table after every row;
#   2. for the rest of the call, the MNIST Glow of width 128 (0.92M parameters): its clean
#      stage grown from the shipped clean model (`--config.grow_from`, glow.widen) or continued
#      from a committed training state (STATE=path), then the σ ladder fine-tuned
#      (FINETUNE=all, one whole model per σ as BASIS does; FINETUNE=modulation shares the
#      body, docs/glow.md), until max_seconds; re-running the same call continues it (the
#      state comes back under $OUT). As the CPU run trains it: the last COOLDOWN (0.15) of
#      every stage cools the rate down, and the ladder's steps per σ are LADDER.
#
# Prepare here first (the GPU machine lacks ml_collections and clu; ../shared does not travel):
#   mkdir -p .gpu-run/wheels  # .gpu-run/ is git-ignored
#   cp ../shared/device/wheels-py312/{ml_collections,clu}-*.whl .gpu-run/wheels/
#   cp -r ../shared/data/mnist .gpu-run/
# then through the device tool, with carry=[".gpu-run"] and timeout_s = BUDGET_S + 30:
#   bash studies/gpu/benchmark_and_train_glow.sh
# Back under $OUT: results.tar (bench_cifar10/ and bench_mnist/ benchmark.{md,json}; glow/
# metrics.jsonl, train_metrics.jsonl, config.json), training_state.npz.part-* (joined with
# cat: commit it, or pass it as STATE= to the next call), glow_sigmas.npz when the ladder finished (the prior's
# `weights`), logs.tar.gz, gpu.txt.
#
# Tested end to end on the CPU with tiny settings first (docs/glow.md gives the command).
set -uo pipefail
BUDGET_S=${BUDGET_S:-560} BENCH_S=${BENCH_S:-180} BENCH=${BENCH:-} TRAIN_EXTRA=${TRAIN_EXTRA:-}
STATE=${STATE:-} STARTUP_S=${STARTUP_S:-40} FINETUNE=${FINETUNE:-all} COOLDOWN=${COOLDOWN:-0.15}
LADDER=${LADDER:-"(2000,1000,300,300,300,300,300,300,300,300)"}
source studies/gpu/common.sh

run_benchmarks

# The Glow, until 30 s before the end (packing after). A state continues the run exactly.
start_from="--config.grow_from=training/glow_mnist/glow_clean.npz"
[[ -n "$STATE" ]] && start_from="--config.init_weights=$STATE"
train_s=$(( $(left) - 30 - STARTUP_S ))
if (( train_s < 20 )); then echo "glow skipped: no time left" >> "$W/logs/stages.txt"; else
  timeout $(( train_s + STARTUP_S + 20 )) $PY -m experiments.train_glow \
    --config=configs/train_glow_mnist.py --config.data.path=.gpu-run/mnist \
    --config.model.width=128 --config.train.finetune_params="$FINETUNE" \
    --config.train.cooldown_fraction="$COOLDOWN" --config.train.finetune_steps_per_stage="$LADDER" \
    --config.train.checkpoint_every=1000 --config.train.max_seconds="$train_s" \
    $start_from $TRAIN_EXTRA --workdir="$W/glow" > "$W/logs/glow.log" 2>&1
  echo "glow exit $? at $((SECONDS - start)) s" >> "$W/logs/stages.txt"
  mkdir -p "$W/results/glow"
  cp "$W/glow"/{metrics.jsonl,train_metrics.jsonl,config.json} "$W/results/glow/" 2>/dev/null
  cp "$W/glow"/glow_sigmas.npz "$OUT/" 2>/dev/null
  # Under the 16 MiB file limit: `cat training_state.npz.part-* > training_state.npz`.
  [[ -f "$W/glow/training_state.npz" ]] && \
    split -b 15M -d "$W/glow/training_state.npz" "$OUT/training_state.npz.part-"
fi
pack
echo "done at $((SECONDS - start)) s" | tee -a "$W/logs/stages.txt"
