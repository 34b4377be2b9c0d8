#!/usr/bin/env bash
# Pinned separations for refactors (issue 35): run before and after a change and compare the
# printed SHA-256 of each separations.npz; equal hashes mean byte-identical results.
#   bash studies/pinned_runs.sh OUTDIR MNIST_DIR CIFAR10_DIR [PYTHON]
# MNIST: 20 held-out training mixtures (images 58,000 on, never trained on), the shipped
# prior, the default quality (best of 2, T = 50). CIFAR-10: 4 held-out mixtures, the shipped
# prior, T = 10 (the full schedule's code path at a fifth of its cost).
set -euo pipefail
out=$1; mnist=$2; cifar=$3; python=${4:-python3}
"$python" -m experiments.separate --config=configs/mnist_unet.py:heldout \
  --config.data.path="$mnist" --config.num_mixtures=20 --workdir="$out/mnist"
"$python" -m experiments.separate --config=configs/cifar_unet.py:heldout \
  --config.data.path="$cifar" --config.num_mixtures=4 --config.schedule.steps_per_level=10 \
  --workdir="$out/cifar10"
sha256sum "$out/mnist/separations.npz" "$out/cifar10/separations.npz"
