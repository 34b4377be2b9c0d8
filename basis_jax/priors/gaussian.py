"""An analytic prior: independent Gaussian pixels, with a closed-form score at every σ.

x ~ N(μ, diag v)  ⇒  x + σ·ε ~ N(μ, diag(v + σ²)),  ∇ log p_σ(x) = −(x − μ)/(v + σ²).

With a linear mixing operator the BASIS posterior at the last level is Gaussian too, so
this prior lets anyone watch the sampler work without weights, and lets the tests compare
samples with the exact posterior (`analytic_posterior`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from basis_jax.priors import base
from basis_jax.priors.base import Prior


def make_prior(means, variances, sigmas) -> Prior:
  """A Gaussian prior with per-pixel `means` and `variances` ([H, W, C])."""
  means = np.asarray(means, np.float32)
  variances = np.asarray(variances, np.float32)
  if means.shape != variances.shape or means.ndim != 3:
    raise ValueError(f"means and variances must both be [H, W, C]; got {means.shape} and "
                     f"{variances.shape}.")
  if not (variances > 0).all():
    raise ValueError("Gaussian prior variances must be positive.")
  params = {"means": jnp.asarray(means), "variances": jnp.asarray(variances),
            "sigmas": jnp.asarray(sigmas, jnp.float32)}

  def score_fn(params, x, level):
    noisy_var = params["variances"] + params["sigmas"][level]**2
    return -(x - params["means"]) / noisy_var

  def log_density_fn(params, x, level):
    noisy_var = params["variances"] + params["sigmas"][level]**2
    per_pixel = -0.5 * ((x - params["means"])**2 / noisy_var + jnp.log(2 * jnp.pi * noisy_var))
    return jnp.sum(per_pixel, axis=(1, 2, 3))

  def sample_fn(num, seed):
    rng = np.random.default_rng(seed)
    return (means + np.sqrt(variances) * rng.standard_normal((num, *means.shape))
            ).astype(np.float32)

  return Prior(name="gaussian_toy", score_fn=score_fn, params=params,
               image_shape=tuple(means.shape), num_levels=len(sigmas),
               log_density_fn=log_density_fn, exact_log_density=True, sample=sample_fn)


def toy_moments(shape, component: int, seed: int, mean: float, std: float):
  """Smooth, component-specific per-pixel means and stds around (mean, std)."""
  rng = np.random.default_rng([seed, component])
  h, w, c = shape
  yy, xx = np.meshgrid(np.linspace(0, np.pi, h), np.linspace(0, np.pi, w), indexing="ij")
  phase = rng.uniform(0, 2 * np.pi)
  pattern = np.sin(yy * (component + 1) + phase) * np.cos(xx * (component + 1))
  means = mean + 0.15 * pattern[..., None] * np.ones((1, 1, c))
  stds = std * (1.0 + 0.5 * rng.uniform(-1, 1, size=shape))
  return means.astype(np.float32), stds.astype(np.float32)


REQUIRED_FIELDS = ("image_shape", "mean", "std", "component", "seed")  # configs/gaussian_toy.py


def load(prior_config, schedule=None) -> Prior:
  """`config.prior` fields: image_shape, mean, std, component, seed."""
  if schedule is None:
    raise ValueError("The Gaussian toy prior needs the schedule (its score depends on σ).")
  base.require_fields(prior_config, REQUIRED_FIELDS, "configs/gaussian_toy.py")
  means, stds = toy_moments(tuple(prior_config["image_shape"]), prior_config["component"],
                            prior_config["seed"], prior_config["mean"], prior_config["std"])
  return make_prior(means, stds**2, schedule.sigmas)


def sample(prior: Prior, num: int, seed: int) -> np.ndarray:
  """Draws clean images x ~ N(μ, v) from a Gaussian toy prior (its `Prior.sample`)."""
  return prior.sample(num, seed)


def analytic_posterior(means, variances, alphas, mixture, noise_var):
  """Exact posterior of x_1..x_k given m = Σ α_j x_j + N(0, noise_var), per pixel.

  means, variances: [k, H, W, C] prior moments; returns (posterior means, variances) of the
  marginals, both [k, H, W, C]. With the BASIS likelihood at the last level, the prior
  variances are v + σ_L², noise_var = γ_L²/w.
  """
  means = np.asarray(means, np.float64)
  variances = np.asarray(variances, np.float64)
  a = np.asarray(alphas, np.float64).reshape((-1,) + (1,) * (means.ndim - 1))
  innovation_var = np.sum(a**2 * variances, axis=0) + noise_var
  gain = a * variances / innovation_var
  post_mean = means + gain * (np.asarray(mixture, np.float64) - np.sum(a * means, axis=0))
  post_var = variances - gain * a * variances
  return post_mean, post_var
