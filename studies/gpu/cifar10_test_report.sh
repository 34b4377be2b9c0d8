#!/usr/bin/env bash
# ONE device run on the H200: the CIFAR-10 test report of docs/score_unet_cifar10.md with the
# shipped prior (basis_jax/weights/score_unet_cifar10.npz), settings fixed beforehand on
# held-out training images (never on these pairs): separation of 500 class-agnostic and 500
# class-split pairs of exact test images, colorization of the 1,000 exact test images, the
# same pairs with best of 8 (whose metrics also give the posterior mean and the oracle);
# SSIM (experiments.evaluate) and label recovery by the project classifier on each.
#
# Prepare here first (ml_collections and clu are missing there; ../shared does not travel):
#   mkdir -p .gpu-run/wheels  # .gpu-run/ is git-ignored
#   cp ../shared/device/wheels-py312/{ml_collections,clu}-*.whl .gpu-run/wheels/
#   cp ../shared/data/cifar10/cifar10_exact_subset.npz .gpu-run/
# then through the device tool, with carry=[".gpu-run"]:
#   bash studies/gpu/cifar10_test_report.sh
# Back under $OUT: results.tar (each run's config.json, metrics.json(l), eval.json/eval.md,
# label_recovery.json, separations.png, psnr_histogram.png), logs.tar.gz, gpu.txt.
# SEP / COLOR: extra --config flags of the separation and colorization runs (the held-out
# choice); N / N_COLOR: mixtures; BUDGET_S: every stage ends inside it, packing included.
# Tested on the CPU first with N=4 N_COLOR=4 BATCH=2 EXTRA=--config.schedule.steps_per_level=2.
set -uo pipefail
BUDGET_S=${BUDGET_S:-270} N=${N:-500} N_COLOR=${N_COLOR:-1000} BATCH=${BATCH:-100}
SEP=${SEP:-} COLOR=${COLOR:-} EXTRA=${EXTRA:-}
source studies/gpu/common.sh
data=(--config.data.path=.gpu-run/cifar10_exact_subset.npz --config.batch_size="$BATCH" $EXTRA)

one() {  # one run: NAME CONFIG N FLAGS...; separation, SSIM, label recovery, records.
  local name=$1 config=$2 n=$3; shift 3
  local budget=$(( $(left) - 15 ))
  if (( budget < 20 )); then echo "$name skipped: no time left" >> "$W/logs/stages.txt"; return; fi
  timeout "$budget" $PY -m experiments.separate --config="$config" "${data[@]}" \
    --config.num_mixtures="$n" "$@" --workdir="$W/$name" > "$W/logs/$name.log" 2>&1
  echo "$name separate exit $? at $((SECONDS - start)) s" >> "$W/logs/stages.txt"
  budget=$(( $(left) - 15 ))
  (( budget > 10 )) && timeout "$budget" $PY -m experiments.evaluate --config=configs/evaluate.py \
    --workdir="$W/$name" --config.ssim=True --config.inception=never \
    >> "$W/logs/$name.log" 2>&1
  budget=$(( $(left) - 15 ))
  (( budget > 10 )) && timeout "$budget" $PY -m experiments.label_recovery --workdir="$W/$name" \
    --classifier=training/classifier_cifar10/classifier.npz >> "$W/logs/$name.log" 2>&1
  echo "$name evaluated at $((SECONDS - start)) s" >> "$W/logs/stages.txt"
  mkdir -p "$W/results/$name"
  cp "$W/$name"/{config.json,metrics.json,metrics.jsonl,eval.json,eval.md,label_recovery.json,separations.png,psnr_histogram.png} \
    "$W/results/$name/" 2>/dev/null
  pack
}

one agnostic configs/cifar_unet.py "$N" $SEP
one class_split configs/cifar_unet.py:class_split "$N" $SEP
one color configs/cifar_color_unet.py "$N_COLOR" $COLOR
one agnostic_best8 configs/cifar_unet.py "$N" $SEP --config.sampler.num_samples=8 \
  --config.select=likelihood
pack
echo "done at $((SECONDS - start)) s"
