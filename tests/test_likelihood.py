"""The denoising bound and the probability-flow ODE against exact Gaussian log densities; common
random numbers; the prior wiring and bad input (docs/likelihood.md derives what is asserted)."""

import logging
import math
from unittest import mock

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from basis_jax.priors import likelihood as lk
from basis_jax.sampling import schedules
from basis_jax.errors import ConfigError
from basis_jax.priors import base, score_unet

A, MU = 0.3, 0.5  # Gaussian data N(MU, A² I): p_σ = N(MU, (A² + σ²) I).
POINTS = np.array([[0.5, 0.2, 1.4, -0.3], [0.9, 0.55, 0.1, 0.7], [1.2] * 4],
                  np.float32).reshape(3, 2, 2, 1)  # Three 2×2 images, one far in the tail.


def gaussian_score(params, x, sigma):
  del params
  return -(x - MU) / (A ** 2 + sigma[:, None, None, None] ** 2)


def gaussian_nll(x, var):
  """−log N(x; MU, var·I) per image."""
  return np.sum(0.5 * np.log(2 * np.pi * var) + (x - MU) ** 2 / (2 * var), axis=(1, 2, 3))


def closed_form_bound(x, settings):
  """E_ε of the bound for the exact Gaussian score. x's own variance is b² = A² + σ_0², and
  per pixel ∫ (1 − E(νs + ε)²) d log ν = ∫ (2b² + u − r²)/(2(b² + u)²) du (u = ν², r = x − MU)
  = ½[log(b² + u) + (b² − r²)·(−1/(b² + u))] between u = ν_0² and ν_T² (docs/likelihood.md)."""
  lo, hi, base_sq = lk.noise_range(settings)
  b2, u = A ** 2 + base_sq, settings.sigma_max ** 2
  x = x.astype(np.float64)
  r2 = (x - MU) ** 2
  prior = 0.5 * math.log(2 * math.pi * u) + (x ** 2 + hi ** 2) / (2 * u)
  gain = 0.5 * (math.log((b2 + hi ** 2) / (b2 + lo ** 2))
                + (b2 - r2) * (1 / (b2 + lo ** 2) - 1 / (b2 + hi ** 2)))
  return np.sum(prior - gain, axis=(1, 2, 3))


@pytest.mark.parametrize("form", lk.FORMS)
def test_bound_estimate_matches_its_closed_form(form):
  """Unbiased: K = 1024, N = 32 leaves a standard error ≈ 0.07 nats; 0.3 is > 4 of them."""
  settings = lk.BoundSettings(0.05, 17.0, num_sigmas=1024, num_noise=32, seed=3, form=form)
  estimate = np.asarray(lk.denoising_bound(gaussian_score, None, POINTS, settings))
  np.testing.assert_allclose(estimate, closed_form_bound(POINTS, settings), atol=0.3)


def test_bound_is_exact_in_the_limit_and_above_exact_otherwise():
  """With the exact score the bound is tight (the reverse diffusion is exact). 'marginal'
  bounds −log p_σmin: equal once π = N(0, σ_max²) matches p_σmax, above it by π's mismatch
  only at σ_max = 17 (< 0.01 nats for these 4-pixel points). 'data' bounds the density of
  p_σmin ∗ N(0, σ_min²) = N(MU, A² + 2σ_min²) (the decoder's posterior is not exact: a gap
  ≥ 0) and tends to −log p_data as σ_min → 0, σ_max → ∞."""
  x = POINTS
  for sigma_min in (0.005, 0.05):
    exact = gaussian_nll(x, A ** 2 + sigma_min ** 2)
    wide = closed_form_bound(x, lk.BoundSettings(sigma_min, 1e3, form="marginal"))
    np.testing.assert_allclose(wide, exact, atol=1e-4)
    trained = closed_form_bound(x, lk.BoundSettings(sigma_min, 17.0, form="marginal")) - exact
    assert np.all(trained >= 0) and np.all(trained < 0.01), trained
    gap = (closed_form_bound(x, lk.BoundSettings(sigma_min, 1e3, form="data"))
           - gaussian_nll(x, A ** 2 + 2 * sigma_min ** 2))
    # To leading order the gap is Σ σ_min² r²/(2A⁴): it vanishes at the mean.
    leading = np.sum(sigma_min ** 2 * (x - MU) ** 2 / (2 * A ** 4), axis=(1, 2, 3))
    assert np.all(gap >= 0) and np.all(gap <= leading + 1e-3), (gap, leading)
  np.testing.assert_allclose(closed_form_bound(x, lk.BoundSettings(1e-5, 1e4, form="data")),
                             gaussian_nll(x, A ** 2), atol=1e-4)
  for form in lk.FORMS:
    settings = lk.BoundSettings(0.005, 1e3, num_sigmas=1024, num_noise=32, seed=0, form=form)
    estimate = np.asarray(lk.denoising_bound(gaussian_score, None, x, settings))
    np.testing.assert_allclose(estimate, gaussian_nll(x, A ** 2 + 0.005 ** 2), atol=0.4)


def _correlated_gaussian(d=6, seed=0):
  rng = np.random.default_rng(seed)
  m = rng.normal(size=(d, d)).astype(np.float64) * 0.2
  cov = m @ m.T + 0.02 * np.eye(d)
  # Centred: π = N(0, σ_max²) then differs from p_σmax only in variance (~1/σ_max²); an
  # off-centre mean costs ~|mean|·|x(σ_max)|/σ_max² ∝ 1/σ_max pointwise (4e-3 nats at 1000).
  mean = np.zeros(d)

  def score(params, x, sigma):
    del params
    flat = x.reshape(x.shape[0], -1) - mean
    prec = jnp.linalg.inv(jnp.asarray(cov, jnp.float32)[None]
                          + (sigma ** 2)[:, None, None] * jnp.eye(d)[None])
    return -jnp.einsum("bij,bj->bi", prec, flat).reshape(x.shape)

  def nll(x, sigma):
    c = cov + sigma ** 2 * np.eye(d)
    r = x.reshape(len(x), -1).astype(np.float64) - mean
    _, logdet = np.linalg.slogdet(c)
    return 0.5 * (d * np.log(2 * np.pi) + logdet + np.einsum("bi,ij,bj->b", r, np.linalg.inv(c), r))

  x = rng.uniform(-0.2, 1.2, (4, 1, d, 1)).astype(np.float32)
  return score, nll, x


def test_ode_matches_exact_log_density():
  """RK4 in log σ, 64 steps, σ_max = 1000: within 2e-3 nats of log p_σmin with the exact
  divergence; Rademacher probes are exact for a diagonal Jacobian (the isotropic case) and
  unbiased otherwise (16 probes: std ≈ 0.4 nats here; the mean of 8 seeds within 0.5)."""
  score, nll, x = _correlated_gaussian()
  settings = lk.OdeSettings(0.01, 1e3, num_steps=64, method="rk4", probe="exact")
  np.testing.assert_allclose(-np.asarray(lk.ode_log_likelihood(score, None, x, settings)),
                             nll(x, 0.01), atol=2e-3)
  hutchinson = np.mean([lk.ode_log_likelihood(
      score, None, x, lk.OdeSettings(0.01, 1e3, num_steps=64, method="rk4", num_probes=16,
                                     seed=seed)) for seed in range(8)], axis=0)
  np.testing.assert_allclose(-hutchinson, nll(x, 0.01), atol=0.5)
  x = POINTS
  settings = lk.OdeSettings(0.005, 1e3, num_steps=64, method="rk4")
  ode = np.asarray(lk.ode_log_likelihood(gaussian_score, None, x, settings))
  np.testing.assert_allclose(-ode, gaussian_nll(x, A ** 2 + 0.005 ** 2), atol=5e-3)


def test_ode_integrators_converge_in_order():
  """Halving the step cuts RK4's error ~16× and Heun's ~4× (fourth and second order)."""
  x = POINTS
  exact = gaussian_nll(x, A ** 2 + 0.005 ** 2)
  for method, steps, ratio in (("rk4", 24, 8.0), ("heun", 48, 3.0)):
    errors = [np.max(np.abs(-np.asarray(lk.ode_log_likelihood(
        gaussian_score, None, x, lk.OdeSettings(0.005, 1e3, num_steps=n, method=method)))
        - exact)) for n in (steps, 2 * steps)]
    assert errors[0] / errors[1] > ratio, (method, errors)


def test_bits_per_dim_and_dequantisation():
  # The uniform density on [0, 1]^D (log p = 0) is 8 bits per 8-bit pixel.
  np.testing.assert_allclose(lk.bits_per_dim(np.zeros(3), 784), 8.0)
  np.testing.assert_allclose(lk.bits_per_dim(784 * math.log(2), 784), 9.0)
  pixels = np.arange(256, dtype=np.float32).reshape(1, 16, 16, 1) / 255.0
  x = np.asarray(lk.dequantize_8bit(pixels, jax.random.key(0)))
  u = np.arange(256).reshape(1, 16, 16, 1)
  assert np.all(x >= u / 256) and np.all(x < (u + 1) / 256)


def _tiny_prior(likelihood=None, weights=""):
  config = ml_collections.ConfigDict({
      "name": "score_unet", "weights": weights, "seed": 0, "use_ema": True,
      "dataset": "mnist", "allow_random_weights": not weights,
      "allow_sigma_extrapolation": False,
      # Given keys only: the rest are BoundSettings' (a library call may pass a part).
      "likelihood": ml_collections.ConfigDict(likelihood or {})})
  if not weights:
    config.update(channels=1, image_size=8, widths=(8, 8), embed_dim=8, groups=4)
  schedule = schedules.Schedule(schedules.geometric_sigmas(1.0, 0.01, 3), 1, 1e-5)
  if weights:
    return score_unet.load(config, schedule)
  # An empty path means the shipped weights; hide them to get the tiny random network.
  with mock.patch.object(score_unet, "shipped_weights", lambda dataset: None):
    return score_unet.load(config, schedule)


def test_prior_bound_uses_common_random_numbers():
  """An image's value is the same alone, in any batch and any position, and in every call;
  another seed gives another estimate."""
  settings = {"sigma_min": 0.005, "sigma_max": 17.0, "num_sigmas": 8, "num_noise": 2,
              "seed": 0}
  prior = _tiny_prior(settings)
  x = jax.random.uniform(jax.random.key(1), (3, 8, 8, 1))
  fn = jax.jit(prior.log_density_fn)
  batch = np.asarray(fn(prior.params, x, 0))
  alone = np.array([np.asarray(fn(prior.params, x[i:i + 1], 0))[0] for i in range(3)])
  permuted = np.asarray(fn(prior.params, x[::-1], 2))[::-1]
  np.testing.assert_allclose(alone, batch, rtol=1e-5)
  np.testing.assert_allclose(permuted, batch, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(fn(prior.params, x, 0)), batch)
  other = _tiny_prior({**settings, "seed": 1})
  assert np.all(np.abs(np.asarray(jax.jit(other.log_density_fn)(other.params, x, 0)) - batch)
                > 1e-3)
  expected = -np.asarray(lk.denoising_bound(
      score_unet.make_score_fn(_tiny_graphdef()), prior.params, x,
      lk.BoundSettings(**settings)))
  np.testing.assert_allclose(batch, expected, rtol=1e-5)


def _tiny_graphdef():
  config = score_unet.ScoreUNetConfig(channels=1, image_size=8, widths=(8, 8), embed_dim=8,
                                      groups=4)
  return score_unet.abstract_params(config)[0]


@pytest.mark.parametrize("key", ["num_sigmas", "num_noise"])
def test_refuses_fewer_than_one_draw(key):
  with pytest.raises(ConfigError, match=f"config.prior.likelihood.{key}"):
    lk.settings_from_config({key: 0})
  with pytest.raises(ConfigError, match=f"config.prior.likelihood.{key}"):
    _tiny_prior({key: 0})


def test_refuses_unknown_keys_and_bad_range():
  with pytest.raises(ConfigError, match="num_sigma"):
    lk.settings_from_config({"num_sigma": 4})
  with pytest.raises(ConfigError, match="sigma_min < sigma_max"):
    lk.settings_from_config({"sigma_min": 1.0, "sigma_max": 0.5})


def test_a_range_beyond_the_trained_range_is_refused_unless_allowed(caplog):
  """The one σ policy (priors.base.check_sigmas): refused, naming both ranges."""
  weights = score_unet.shipped_weights("mnist")
  with pytest.raises(ConfigError, match=r"trained for σ in \[0.005, 17\]; .* σ = 30, outside"):
    _tiny_prior({"sigma_max": 30.0}, weights=weights)
  with caplog.at_level(logging.WARNING):
    prior = lk.log_density_from_config(
        None, {"likelihood": {"sigma_max": 30.0}, "allow_sigma_extrapolation": True}, weights)
  assert prior is not None and "extrapolations" in caplog.text and "σ = 30" in caplog.text
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    lk.log_density_from_config(None, {"likelihood": {"sigma_min": 0.01}}, weights)
  assert "trained for" not in caplog.text


def test_likelihood_selection_needs_a_prior_with_one():
  no_density = base.Prior(name="ncsn", score_fn=gaussian_score, params=None,
                          image_shape=(2, 2, 1))
  with pytest.raises(ConfigError, match="the ncsn prior has none"):
    lk.require_log_density([no_density, no_density])
  lk.require_log_density([_tiny_prior()])
