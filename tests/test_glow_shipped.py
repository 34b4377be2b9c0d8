"""The Glow the package ships (basis_jax/weights/glow_mnist.npz, 16-bit storage): it loads
as float32, is the default of configs/mnist_glow.py, and 16 bits change little.

The float32 figures below were measured from the float32 training output
(runs/glow_mnist/glow_sigmas.npz, training/glow_mnist/README.md) with jax 0.10.2 on the CPU,
before it was stored in 16 bits: held-out bits/dim of 64 training images 58,000-58,063
(never trained on), dequantised and noised with PRNGKey(0) as below, per σ model.
16-bit storage moved each mean by at most 0.0004 bits/dim (and one image by at most
0.0019), so the bound of 0.001 bits/dim also catches a wrong file or a lossy loader.
"""

import jax
import numpy as np
import pytest
from flax import nnx

from basis_jax.files import data as data_lib
from basis_jax.priors import glow, glow_model, likelihood
from basis_jax.sampling import schedules
from configs import mnist_glow
from tests import stored_precision

FLOAT32_BITS_PER_DIM = {  # σ -> mean held-out bits/dim of the float32 model
    1.0: 10.08301, 0.5995: 9.36853, 0.3594: 8.66171, 0.2154: 7.96341, 0.1292: 7.27747,
    0.07743: 6.60999, 0.04642: 5.95661, 0.02783: 5.32541, 0.01668: 4.71747, 0.01: 4.27743}
TOLERANCE_BITS = 1e-3


def test_shipped_glow_is_the_config_default_and_loads_as_float32():
  path = glow.shipped_weights("mnist")
  assert path is not None, "the package ships no MNIST Glow"
  weights = glow.load_weights(path)
  config = mnist_glow.get_config()
  assert not config.prior.weights and config.prior.dataset == "mnist"
  assert {a.dtype for a in jax.tree.leaves(weights.state)} == {np.dtype(np.float32)}
  expected = schedules.geometric_sigmas(config.schedule.sigma_max, config.schedule.sigma_min,
                                        config.schedule.num_levels)
  np.testing.assert_allclose(weights.sigmas, expected, rtol=1e-6)
  assert weights.config.image_shape == tuple(config.prior.image_shape)
  assert (weights.config.levels, weights.config.depth, weights.config.width) == (
      config.prior.levels, config.prior.depth, config.prior.width)


def test_16_bit_storage_keeps_heldout_bits_per_dim(shared_data):
  weights = glow.load_weights(glow.shipped_weights("mnist"))
  images = data_lib.load_mnist_files(str(shared_data / "mnist"), "train").images[58000:58064]
  k_deq, k_noise = jax.random.split(jax.random.PRNGKey(0))
  x = glow_model.dequantize(images, k_deq, 8)
  noise = jax.random.normal(k_noise, x.shape)
  # One compilation for the ten σ models: the state is an argument.
  log_prob = jax.jit(lambda state, v: nnx.merge(weights.graphdef, state)(v))
  measured = {}
  for i, sigma in enumerate(weights.sigmas):
    state = jax.tree.map(lambda a, i=i: a[i], weights.state)
    bits = glow_model.log_prob_to_bits_per_dim(log_prob(state, x + sigma * noise),
                                               weights.config)
    measured[sigma] = float(np.mean(bits))
  for sigma, expected in FLOAT32_BITS_PER_DIM.items():
    got = next(v for s, v in measured.items() if abs(s - sigma) / sigma < 1e-3)
    assert got == pytest.approx(expected, abs=TOLERANCE_BITS), (sigma, got, expected)


# Separation PSNR per mixture of the float32 model, measured on 2026-12-06 (Python 3.11,
# jax 0.10.2, this CPU) before 16-bit storage mattered: configs/mnist_glow.py:heldout (the
# defaults then: T = 100, δ = 2e-5, the soft data term alone), 8 mixtures of training images
# from 58,000 (never trained on), --config.prior.weights=runs/glow_mnist/glow_sigmas.npz
# (the float32 training output). The shipped 16-bit file gave the same PSNR to 0.02 dB on
# 7 of them; one chain ended in another mode (−1.87 dB), so the mean moved by −0.23 dB.
FLOAT32_SEPARATION_PSNR = (14.032, 34.452, 15.291, 18.546, 18.226, 16.784, 11.215, 11.960)


@pytest.mark.slow
def test_16_bit_storage_keeps_separation_psnr(tmp_path, shared_data):
  """About 5 minutes on the 2-core CPU: 8 mixtures × 10 σ × 100 Glow gradient steps."""
  from basis_jax.sampling import separation  # pylint: disable=import-outside-toplevel
  config = mnist_glow.get_config("heldout")
  config.sampler.hard_constraint = False  # As when the figures above were measured.
  config.data.path = str(shared_data / "mnist")
  config.num_mixtures = config.batch_size = len(FLOAT32_SEPARATION_PSNR)
  separation.run(config, str(tmp_path))
  stored_precision.assert_psnr_kept(tmp_path, FLOAT32_SEPARATION_PSNR)


def test_glow_image_log_probs_do_not_depend_on_chunking_and_give_the_papers_units(
    shared_data):
  """What studies/glow_table1.py scores each Table 1 row with (the test imports no study:
  their absl flags share one namespace)."""
  weights = glow.load_weights(glow.shipped_weights("mnist"))
  p_sigma_l = glow.select_level(weights.state, int(np.argmin(weights.sigmas)))
  digits = data_lib.load_mnist_files(str(shared_data / "mnist"), "test").images[:6]
  log_p = lambda images, chunk: glow.image_log_probs(weights, p_sigma_l, images, seed=2026,
                                                     chunk=chunk)
  by_three = log_p(digits, 3)
  by_four = log_p(digits, 4)  # One padded chunk.
  np.testing.assert_allclose(by_four, by_three, rtol=1e-5)
  # Table 1's bits/dim of 8-bit images (likelihood.bits_per_dim) is the Glow's own unit.
  np.testing.assert_allclose(likelihood.bits_per_dim(-by_three, 28 * 28),
                             glow_model.log_prob_to_bits_per_dim(by_three, weights.config),
                             rtol=1e-6)
  # The Average's estimate of a pair (its mixture m, as α = ½) is far less likely under p_σL
  # than the digits it mixes: the likelihood sees overlapped strokes.
  averages = (digits[0::2] + digits[1::2]) / 2
  assert log_p(averages, 3).max() < by_three.min()
