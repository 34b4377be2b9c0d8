#!/usr/bin/env bash
# Every figure of docs/score_unet.md's results section, in the order they were produced.
#
#   bash studies/reports/mnist_unet.sh WEIGHTS MNIST_DIR OUT [T] [N_TEST] [N_HELDOUT] [N_SWEEP]
#
# WEIGHTS: the prior's weights file (the shipped basis_jax/weights/score_unet_mnist.npz);
# MNIST_DIR: the four MNIST idx .gz files; OUT: a results folder (re-running resumes);
# T: steps per level of the reported runs (default 50, chosen on the held-out sweep, step 1);
# N_TEST: test pairs per mixture kind; N_HELDOUT / N_SWEEP: mixtures in the sweeps.
set -euo pipefail
weights=$1 data=$2 out=$3 T=${4:-50} n_test=${5:-500} n_heldout=${6:-50} n_sweep=${7:-50}
py=${PYTHON:-python}
common=(--config.data.path="$data" --config.prior.weights="$weights")

# 1. Settings chosen on mixtures of held-out TRAINING images (never on the test pairs):
#    T with the soft constraint (the paper's BASIS) and with the hard constraint (the
#    shipped default), then one change at a time from the default at T = 20 (not the
#    likelihood weight w: from the second step on the data term is evaluated at a
#    projected x, where g(x) = m, so it is zero), and four samples with the residual choice
#    at T = 50 (4x the cost).
soft=sampler.hard_constraint=False hard=sampler.hard_constraint=True
$py -m studies.psnr_sweep --config=configs/mnist_unet.py:heldout "${common[@]}" \
  --config.num_mixtures="$n_heldout" --config.batch_size="$n_heldout" --workdir="$out/heldout" \
  --settings="soft_T10:schedule.steps_per_level=10,$soft" \
  --settings="soft_T20:schedule.steps_per_level=20,$soft" \
  --settings="soft_T50:schedule.steps_per_level=50,$soft" \
  --settings="soft_T100:schedule.steps_per_level=100,$soft" \
  --settings="hard_T10:schedule.steps_per_level=10,$hard" \
  --settings="hard_T20:schedule.steps_per_level=20,$hard" \
  --settings="hard_T50:schedule.steps_per_level=50,$hard" \
  --settings="hard_T100:schedule.steps_per_level=100,$hard" \
  --settings="hard_T20_raw:schedule.steps_per_level=20,$hard,prior.use_ema=False" \
  --settings="hard_T20_lr6e-5:schedule.steps_per_level=20,$hard,schedule.step_lr=6e-5" \
  --settings="hard_T20_lr1.5e-5:schedule.steps_per_level=20,$hard,schedule.step_lr=1.5e-5" \
  --settings="hard_T50_S4_residual:schedule.steps_per_level=50,$hard,sampler.num_samples=4"

# 2. The reported figures: class-agnostic and class-split test pairs, the paper's protocol.
for kind in agnostic class_split; do
  $py -m experiments.separate --config=configs/mnist_unet.py:$kind "${common[@]}" \
    --config.schedule.steps_per_level="$T" --config.num_mixtures="$n_test" \
    --config.batch_size=250 --workdir="$out/test_$kind"
  $py -m experiments.evaluate --config=configs/evaluate.py --workdir="$out/test_$kind"
done

# 3. PSNR against cost on the first N_SWEEP class-agnostic test pairs (the same mixtures
#    as the first N_SWEEP of step 2), the shipped default (hard constraint) unless named.
$py -m studies.psnr_sweep --config=configs/mnist_unet.py "${common[@]}" \
  --config.num_mixtures="$n_sweep" --config.batch_size="$n_sweep" --workdir="$out/cost" \
  --settings='T10:schedule.steps_per_level=10' \
  --settings='T20:schedule.steps_per_level=20' \
  --settings='T50:schedule.steps_per_level=50' \
  --settings='T100:schedule.steps_per_level=100' \
  --settings="soft_T$T:schedule.steps_per_level=$T,$soft" \
  --settings="raw_T$T:schedule.steps_per_level=$T,prior.use_ema=False" \
  --settings="S4_residual_T$T:schedule.steps_per_level=$T,sampler.num_samples=4" \
  --settings='L20_T10:schedule.num_levels=20,schedule.steps_per_level=10'

# 4. Wall time for 50 mixtures: the shipped prior beside the published NCSN architecture
#    (random weights) on the same mixtures; per-step time from two runs of different T.
$py -m studies.psnr_sweep --config=configs/mnist_unet.py "${common[@]}" \
  --config.num_mixtures=50 --config.batch_size=50 --workdir="$out/walltime" \
  --settings='unet_T1:schedule.steps_per_level=1' \
  --settings='unet_T11:schedule.steps_per_level=11' \
  --settings='ncsn_random_T1:prior.name=ncsn,prior.weights=,prior.allow_random_weights=True,schedule.steps_per_level=1' \
  --settings='ncsn_random_T2:prior.name=ncsn,prior.weights=,prior.allow_random_weights=True,schedule.steps_per_level=2'
