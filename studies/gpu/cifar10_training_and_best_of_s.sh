#!/usr/bin/env bash
# ONE device run on the H200 (15 minutes of device time per session, one call): the CIFAR-10
# prior's training goes on from the committed state (training/score_unet_cifar10/), same
# recipe (batch 64, lr 1e-3, held-out loss every 1,000 steps), for TRAIN_S seconds; a
# cool-down branch (lr falling linearly to 5 % over COOL_STEPS) is exported as the weights the
# package ships; meanwhile the four MNIST best-of-S test runs of docs/best_of_s.md (default
# and :best, class-agnostic and class-split, 500 pairs each) share the GPU, and their report
# (table and histogram) is written there, since the separations themselves stay behind.
#
# Prepare here first (the GPU machine lacks ml_collections and clu; ../shared does not travel;
# the MNIST runs read only the two test files):
#   echo /.gpu-run/ >> .git/info/exclude
#   mkdir -p .gpu-run/wheels .gpu-run/mnist
#   cp ../shared/device/wheels-py312/{ml_collections,clu}-*.whl .gpu-run/wheels/
#   cp ../shared/data/mnist/t10k-* .gpu-run/mnist/
#   cp ../shared/data/cifar10/cifar10_jpeg_q75.npz .gpu-run/
# then through the device tool, with carry=[".gpu-run"]:
#   bash studies/gpu/cifar10_training_and_best_of_s.sh
# What comes back under $OUT (at most 8 files): state.npz.part-* (the training state, split
# under the 16 MiB file limit: `cat state.npz.part-* > weights.npz`), score_unet_cifar10.npz
# (the export), results.tar (metrics, configs, the best-of-S report), logs.tar.gz, gpu.txt.
#
# Every stage has a deadline inside BUDGET_S, so the packing at the end always runs; the
# training state is packed as soon as the main run stops. Tested on the CPU with tiny
# settings first (N_MNIST=4 MNIST_BATCH=2 TRAIN_S=20 COOL_STEPS=20 BUDGET_S=900
# MNIST_EXTRA=--config.schedule.steps_per_level=2 PY=/path/to/python).
set -uo pipefail
BUDGET_S=${BUDGET_S:-540} TRAIN_S=${TRAIN_S:-330} COOL_STEPS=${COOL_STEPS:-5000}
N_MNIST=${N_MNIST:-500} MNIST_BATCH=${MNIST_BATCH:-100} MNIST_EXTRA=${MNIST_EXTRA:-}
source studies/gpu/common.sh
# Two JAX processes share the GPU: neither may take the default 75 % of its memory.
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.45

# 1. CIFAR-10 training, in the background: the committed state, the committed recipe. No
#    sample grids here (their compile would stall training; the grid of the shipped weights
#    is drawn afterwards), a checkpoint only at the end.
cifar=(--config=configs/train_score_unet_cifar10.py --config.data.path=.gpu-run/cifar10_jpeg_q75.npz
       --config.sampling.every=0 --config.checkpoint_every=10000)
$PY -m experiments.train "${cifar[@]}" --workdir="$W/train" \
  --config.init_weights=training/score_unet_cifar10/weights.npz --config.max_seconds="$TRAIN_S" \
  > "$W/logs/train.log" 2>&1 &
train_pid=$!

# 2. MNIST best-of-S test runs, meanwhile (the :best runs first: they are the missing figures).
mnist=(--config.data.path=.gpu-run/mnist --config.num_mixtures="$N_MNIST"
       --config.batch_size="$MNIST_BATCH" $MNIST_EXTRA)
runs=""
for spec in agnostic_best:best:class-agnostic:best split_best:class_split,best:class-split:best \
            agnostic_default:agnostic:class-agnostic:default \
            split_default:class_split:class-split:default; do
  IFS=: read -r name variant set label <<< "$spec"
  budget=$(( $(left) - 200 ))  # keep time for the cool-down, the export and the packing
  if (( budget < 30 )); then echo "skipping $name: no time left" >> "$W/logs/stages.txt"; continue; fi
  timeout "$budget" $PY -m experiments.separate --config="configs/mnist_unet.py:$variant" \
    "${mnist[@]}" --workdir="$W/mnist/$name" > "$W/logs/mnist_$name.log" 2>&1
  echo "$name exit $? at $((SECONDS - start)) s" >> "$W/logs/stages.txt"
  mkdir -p "$W/results/mnist_$name"
  cp "$W/mnist/$name"/{config.json,metrics.json,metrics.jsonl,timing.json} \
    "$W/results/mnist_$name/" 2>/dev/null
  [[ -f "$W/mnist/$name/metrics.json" ]] && runs+="${runs:+,}$set:$label=$W/mnist/$name"
  pack
done
if [[ -n "$runs" ]]; then
  timeout 60 $PY -m studies.best_of_s_report --runs="$runs" \
    --out="$W/results/best_of_s_test.md" --plot="$W/results/best_of_s_test_histogram.png" \
    > "$W/logs/report.log" 2>&1
  echo "report exit $? at $((SECONDS - start)) s" >> "$W/logs/stages.txt"
fi
pack

# 3. The end of the main run: pack its state at once.
wait "$train_pid"
echo "train exit $? at $((SECONDS - start)) s" >> "$W/logs/stages.txt"
mkdir -p "$W/results/train"
cp "$W/train"/{metrics.jsonl,config.json} "$W/results/train/" 2>/dev/null
split -b 15M -d "$W/train/weights.npz" "$OUT/state.npz.part-"
pack

# 4. The cool-down branch and the export: COOL_STEPS, fewer if the measured rate says they
#    would not fit (the log says which).
step=$($PY -c "import sys; from basis_jax import checkpoint_io; print(checkpoint_io.read_metadata(sys.argv[1])['step'])" "$W/train/weights.npz")
rate=$($PY -c "import json, sys; print(json.loads(open(sys.argv[1]).readlines()[-1]).get('steps_per_sec', 1))" "$W/train/metrics.jsonl")
fit=$($PY -c "import sys; print(int(float(sys.argv[1]) * max(0, int(sys.argv[2]) - 80)) // 100 * 100)" "$rate" "$(left)")
cool=$(( fit < COOL_STEPS ? fit : COOL_STEPS ))
echo "main run ended at step $step ($rate steps/s); cool-down of $cool steps" >> "$W/logs/stages.txt"
if (( cool > 0 )); then
  timeout $(( $(left) - 25 )) $PY -m experiments.train "${cifar[@]}" --workdir="$W/cool" \
    --config.init_weights="$W/train/weights.npz" --config.optim.decay_start="$step" \
    --config.optim.decay_steps="$cool" --config.optim.final_lr_factor=0.05 \
    --config.num_steps=$(( step + cool ))  \
    > "$W/logs/cool.log" 2>&1
  echo "cool-down exit $? at $((SECONDS - start)) s" >> "$W/logs/stages.txt"
  mkdir -p "$W/results/cool"
  cp "$W/cool"/{metrics.jsonl,config.json} "$W/results/cool/" 2>/dev/null
  $PY -m experiments.export_weights --state="$W/cool/weights.npz" \
    --out="$OUT/score_unet_cifar10.npz" > "$W/logs/export.log" 2>&1
  echo "export exit $? at $((SECONDS - start)) s" >> "$W/logs/stages.txt"
fi
pack
echo "done at $((SECONDS - start)) s"
