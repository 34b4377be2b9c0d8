"""Denoising score matching: the objective the score networks are trained with.

(Their sample grids use the separator's own Langevin loop, `sampler.make_prior_sampler`.)

The loss is the one the NCSN reference trains with: for data x in [0,1] (dequantised), a
noise level σ drawn per sample and x̃ = x + σ·ε,

    ℓ = ½ ‖s_θ(x̃, σ) + (x̃ − x)/σ²‖² · σ²        (summed over pixels, averaged over batch)

With the σ² weighting the loss at every σ is ½‖σ·s_θ + ε‖²: D/2 for s_θ = 0 (D pixels), so
losses at different σ are directly comparable and training lowers each.

Where σ comes from is a noise distribution: `LevelNoise` (the reference: a level drawn
uniformly from a fixed ladder; the network sees the level index) or `LogUniformNoise`
(continuous σ, log-uniform on [σ_min, σ_max]; the network sees σ itself). Both give each
sample a `cond` (what the network is called with) and a `band` (which of a fixed set of σ
bands it falls in, for per-band loss statistics).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

ScoreFn = Callable  # score_fn(params, x [B,H,W,C], cond [B]) -> [B,H,W,C]


@dataclasses.dataclass(frozen=True)
class LevelNoise:
  """σ from a fixed ladder, the level uniform per sample; cond = the level index."""

  sigmas: tuple[float, ...]

  @property
  def num_bands(self) -> int:
    return len(self.sigmas)

  def sample(self, key, batch: int):
    levels = jax.random.randint(key, (batch,), 0, len(self.sigmas))
    return levels, jnp.asarray(self.sigmas, jnp.float32)[levels], levels

  def eval_points(self):
    """(conds, sigmas) at which held-out losses are reported: every level."""
    return np.arange(len(self.sigmas), dtype=np.int32), np.asarray(self.sigmas, np.float32)


@dataclasses.dataclass(frozen=True)
class LogUniformNoise:
  """log σ uniform on [log σ_min, log σ_max]; cond = σ. Bands: `num_bands` equal slices of
  log σ, largest σ first; held-out losses at each band's geometric centre."""

  sigma_min: float
  sigma_max: float
  num_bands: int = 10

  def sample(self, key, batch: int):
    lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
    u = jax.random.uniform(key, (batch,), jnp.float32)
    sigma = jnp.exp(lo + (hi - lo) * u)
    bands = jnp.clip(jnp.floor((1.0 - u) * self.num_bands).astype(jnp.int32), 0,
                     self.num_bands - 1)
    return sigma, sigma, bands

  def eval_points(self):
    lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
    centres = np.exp(hi - (np.arange(self.num_bands) + 0.5) * (hi - lo) / self.num_bands)
    sigmas = centres.astype(np.float32)
    return sigmas, sigmas


def dequantize(images_uint8, key):
  """x·255/256 + U(0, 1/256) from uint8 pixels: the reference's dequantisation in [0,1]."""
  x = images_uint8.astype(jnp.float32) / 256.0
  return x + jax.random.uniform(key, x.shape, jnp.float32, 0.0, 1.0 / 256.0)


def dsm_loss(score_fn: ScoreFn, params, x, key, noise):
  """Per-sample DSM loss. `noise`: a noise distribution, or a σ ladder (`LevelNoise`).

  Returns (losses [B], bands [B]); for a ladder the bands are the levels.
  """
  if not hasattr(noise, "sample"):
    noise = LevelNoise(tuple(float(s) for s in noise))
  level_key, noise_key = jax.random.split(key)
  cond, sigma, bands = noise.sample(level_key, x.shape[0])
  sigma = sigma.reshape((-1,) + (1,) * (x.ndim - 1))
  eps = jax.random.normal(noise_key, x.shape, jnp.float32)
  scores = score_fn(params, x + sigma * eps, cond).astype(jnp.float32)
  # (x̃ − x)/σ² = ε/σ, so the weighted residual is σ·s + ε.
  residual = sigma * scores + eps
  losses = 0.5 * jnp.sum(jnp.square(residual).reshape(x.shape[0], -1), axis=-1)
  return losses, bands


def per_level_sums(losses, levels, num_levels: int):
  """(sum of losses, count) per level, each [num_levels]; sums across a batch cheaply."""
  one_hot = jax.nn.one_hot(levels, num_levels, dtype=jnp.float32)
  return one_hot.T @ losses, jnp.sum(one_hot, axis=0)


def fixed_noise_loss(score_fn: ScoreFn, params, x, key, conds, sigmas):
  """Mean DSM loss at each (cond, σ) point for the same x and ε: [len(sigmas)].

  For held-out evaluation: the same images and noise at every point and every call.
  """
  eps = jax.random.normal(key, x.shape, jnp.float32)
  conds, sigmas = jnp.asarray(conds), jnp.asarray(sigmas, jnp.float32)

  def one_point(i):
    cond = jnp.broadcast_to(conds[i], x.shape[:1])
    scores = score_fn(params, x + sigmas[i] * eps, cond).astype(jnp.float32)
    residual = sigmas[i] * scores + eps
    return jnp.mean(0.5 * jnp.sum(jnp.square(residual).reshape(x.shape[0], -1), -1))

  return jax.lax.map(one_point, jnp.arange(sigmas.shape[0]))


def fixed_level_loss(score_fn: ScoreFn, params, x, key, sigmas):
  """`fixed_noise_loss` at every level of a ladder (level-conditioned networks)."""
  return fixed_noise_loss(score_fn, params, x, key, jnp.arange(len(sigmas)), sigmas)
