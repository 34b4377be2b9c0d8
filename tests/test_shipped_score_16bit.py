"""The score priors the package ships (basis_jax/weights/score_unet_{mnist,cifar10}.npz):
stored in 16 bits and deflated, loaded as float32 (MNIST's with its raw weights beside the
EMA ones, CIFAR-10's EMA alone); 16 bits change little.

The float32 figures were measured on 2026-12-07 (Python 3.11, jax 0.10.2, this CPU) from the
float32 files these replaced (git show ccddc75:basis_jax/weights/score_unet_<dataset>.npz),
with the same images and noise as below: the denoising score-matching loss of 64 held-out
training images (MNIST 58,000-58,063, CIFAR-10 48,000-48,063 of the JPEG-lossy copy, never
trained on) at each σ of the separation ladder (MNIST's raw weights too). 16-bit storage
moved each by at most 1.7e-4 relative, so the bound of 1e-3 also catches a wrong file or a
lossy loader.
"""

import os

import jax
import numpy as np
import pytest

from basis_jax.files import checkpoint_io, data_formats
from basis_jax.priors import score_unet
from basis_jax.sampling import schedules
from basis_jax.training import dsm
from tests import stored_precision

FLOAT32_DSM_LOSS = {  # weights -> mean held-out DSM loss per σ (1.0 ... 0.01) of float32
    "mnist": (7.79831, 10.26793, 13.65325, 19.91228, 27.87806, 35.29787, 40.68204, 44.50265,
              47.78072, 52.35569),
    "mnist_raw": (7.85361, 10.29148, 13.71400, 19.95392, 27.91801, 35.25289, 40.54350,
                  44.42362, 47.74191, 52.34926),
    "cifar10": (24.66395, 42.15578, 68.89343, 107.59810, 158.08185, 212.54533, 254.78471,
                288.30823, 330.84033, 402.61383)}
RELATIVE_TOLERANCE = 1e-3
BUDGET_BYTES = 24_000_000  # All shipped weights together (the project's limit).


def heldout_images(shared_data, dataset: str) -> np.ndarray:
  if dataset == "mnist":
    return data_formats.load_mnist_files(str(shared_data / "mnist"), "train").images[
        58000:58064]
  return data_formats.load_cifar10_files(
      str(shared_data / "cifar10" / "cifar10_jpeg_q75.npz"), "train").images[48000:48064]


@pytest.mark.parametrize("dataset,groups", [("mnist", {"params", "ema"}),
                                            ("cifar10", {"ema"})])
def test_shipped_score_prior_is_stored_in_16_bits_and_loads_as_float32(dataset, groups):
  path = score_unet.shipped_weights(dataset)
  assert checkpoint_io.list_groups(path) == groups
  assert checkpoint_io.read_metadata(path)["stored_dtype"] == "float16"
  _, _, params, _ = score_unet.load_weights(path)
  assert {a.dtype for a in jax.tree.leaves(params)} == {np.dtype(np.float32)}
  if "params" not in groups:  # Asking for raw weights that do not ship is refused.
    with pytest.raises(checkpoint_io.CheckpointError,
                       match="holds only EMA weights .* set prior.use_ema=True"):
      score_unet.load_weights(path, use_ema=False)


@pytest.mark.parametrize("weights", ["mnist", "mnist_raw", "cifar10"])
def test_16_bit_storage_keeps_the_heldout_score_matching_loss(weights, shared_data):
  dataset = weights.split("_")[0]
  _, graphdef, params, _ = score_unet.load_weights(score_unet.shipped_weights(dataset),
                                                   use_ema=not weights.endswith("_raw"))
  images = heldout_images(shared_data, dataset)
  sigmas = np.asarray(schedules.geometric_sigmas(1.0, 0.01, 10))  # Both configs' ladder.
  k_deq, k_noise = jax.random.split(jax.random.PRNGKey(0))
  x = dsm.dequantize(np.round(images * 255).astype(np.uint8), k_deq)
  losses = dsm.fixed_noise_loss(score_unet.make_score_fn(graphdef), params, x, k_noise,
                                sigmas, sigmas)
  np.testing.assert_allclose(losses, FLOAT32_DSM_LOSS[weights], rtol=RELATIVE_TOLERANCE)


def test_shipped_weights_fit_the_budget():
  folder = os.path.dirname(score_unet.shipped_weights("mnist"))
  sizes = {name: os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder)}
  assert sum(sizes.values()) <= BUDGET_BYTES, sizes


# configs/cifar_unet.py:heldout at T = 10, one chain, 8 mixtures, with the float32 weights
# (measured as above); the 16-bit file gave each to within 0.001 dB.
CIFAR10_FLOAT32_PSNR = (13.0518, 13.8203, 18.3727, 15.8272, 13.9693, 15.9678, 15.2442, 12.5216)


@pytest.mark.slow
def test_16_bit_storage_keeps_cifar10_separation_psnr(tmp_path, shared_data):
  """About a minute on the 2-core CPU."""
  from basis_jax.sampling import separation  # pylint: disable=import-outside-toplevel
  from configs import cifar_unet  # pylint: disable=import-outside-toplevel
  config = cifar_unet.get_config("heldout")
  config.data.path = str(shared_data / "cifar10" / "cifar10_jpeg_q75.npz")
  config.num_mixtures = config.batch_size = len(CIFAR10_FLOAT32_PSNR)
  config.schedule.steps_per_level = 10
  separation.run(config, str(tmp_path))
  stored_precision.assert_psnr_kept(tmp_path, CIFAR10_FLOAT32_PSNR)
