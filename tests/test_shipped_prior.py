"""The prior the package ships separates real MNIST mixtures (held-out training images)."""

import json

import pytest

from basis_jax import separation
from basis_jax.priors import score_unet
from configs import mnist_unet

# Measured with the shipped weights on these 8 held-out mixtures (docs/score_unet.md):
# the assertion leaves a margin of a few dB for float rounding across jax versions.
MIN_PSNR_DB = 18.0


def test_shipped_weights_exist_and_separate_heldout_mixtures(tmp_path, shared_data):
  assert score_unet.shipped_weights("mnist") is not None, "the package ships no MNIST prior"
  config = mnist_unet.get_config("heldout")
  config.data.path = str(shared_data / "mnist")
  config.num_mixtures = config.batch_size = 8
  config.schedule.steps_per_level = 10
  separation.run(config, str(tmp_path))
  with open(tmp_path / "metrics.json") as f:
    result = json.load(f)
  psnr, baseline = result["psnr"]["mean"], result["average_baseline_psnr"]["mean"]
  print(f"shipped prior, 8 held-out mixtures, T=10: {psnr:.2f} dB (Average {baseline:.2f})")
  assert psnr > MIN_PSNR_DB and psnr > baseline + 3.0
