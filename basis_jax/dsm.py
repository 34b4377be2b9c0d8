"""Annealed denoising score matching (NCSN training) and plain annealed Langevin sampling.

The loss is the one the NCSN reference trains with: for data x in [0,1] (dequantised),
a noise level i drawn uniformly per sample and x̃ = x + σ_i·ε,

    ℓ = ½ ‖s_θ(x̃, i) + (x̃ − x)/σ_i²‖² · σ_i²        (summed over pixels, averaged over batch)

With the σ² weighting each level's loss is ½‖σ_i·s_θ + ε‖²: D/2 for s_θ = 0 at every
level (D pixels), so per-level losses are directly comparable and training lowers each.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

ScoreFn = Callable  # score_fn(params, x [B,H,W,C], levels [B] int) -> [B,H,W,C]


def dequantize(images_uint8, key):
  """x·255/256 + U(0, 1/256) from uint8 pixels: the reference's dequantisation in [0,1]."""
  x = images_uint8.astype(jnp.float32) / 256.0
  return x + jax.random.uniform(key, x.shape, jnp.float32, 0.0, 1.0 / 256.0)


def dsm_loss(score_fn: ScoreFn, params, x, key, sigmas):
  """Per-sample annealed DSM loss. Returns (losses [B], levels [B])."""
  level_key, noise_key = jax.random.split(key)
  sigmas = jnp.asarray(sigmas, jnp.float32)
  levels = jax.random.randint(level_key, x.shape[:1], 0, sigmas.shape[0])
  sigma = sigmas[levels].reshape((-1,) + (1,) * (x.ndim - 1))
  noise = jax.random.normal(noise_key, x.shape, jnp.float32)
  scores = score_fn(params, x + sigma * noise, levels).astype(jnp.float32)
  # (x̃ − x)/σ² = ε/σ, so the weighted residual is σ·s + ε.
  residual = sigma * scores + noise
  losses = 0.5 * jnp.sum(jnp.square(residual).reshape(x.shape[0], -1), axis=-1)
  return losses, levels


def per_level_sums(losses, levels, num_levels: int):
  """(sum of losses, count) per level, each [num_levels]; sums across a batch cheaply."""
  one_hot = jax.nn.one_hot(levels, num_levels, dtype=jnp.float32)
  return one_hot.T @ losses, jnp.sum(one_hot, axis=0)


def fixed_level_loss(score_fn: ScoreFn, params, x, key, sigmas):
  """Mean DSM loss at every level for the same x and ε: [num_levels]. For evaluation."""
  noise = jax.random.normal(key, x.shape, jnp.float32)

  def one_level(level):
    sigma = jnp.asarray(sigmas, jnp.float32)[level]
    levels = jnp.full(x.shape[:1], level, jnp.int32)
    scores = score_fn(params, x + sigma * noise, levels).astype(jnp.float32)
    return jnp.mean(0.5 * jnp.sum(jnp.square(sigma * scores + noise).reshape(x.shape[0], -1), -1))

  return jax.lax.map(one_level, jnp.arange(len(sigmas)))


def annealed_langevin(score_fn: ScoreFn, params, key, shape, sigmas, steps_per_level: int,
                      step_lr: float):
  """Unconditional samples by plain annealed Langevin dynamics (NCSN, Algorithm 1).

  η_i = δ·σ_i²/σ_L²; x ← x + η_i·s(x, i) + √(2η_i)·z, from x ~ U(0,1). Returns x clipped
  to [0,1] (the unclipped chain continues).
  """
  sigmas = jnp.asarray(sigmas, jnp.float32)
  init_key, key = jax.random.split(key)
  x = jax.random.uniform(init_key, shape, jnp.float32)

  def level_body(x, inputs):
    level, level_key = inputs
    eta = step_lr * (sigmas[level] / sigmas[-1]) ** 2
    levels = jnp.full(shape[:1], level, jnp.int32)

    def step(x, step_key):
      noise = jax.random.normal(step_key, shape, jnp.float32)
      return x + eta * score_fn(params, x, levels) + jnp.sqrt(2.0 * eta) * noise, None

    x, _ = jax.lax.scan(step, x, jax.random.split(level_key, steps_per_level))
    return x, None

  num_levels = sigmas.shape[0]
  x, _ = jax.lax.scan(level_body, x,
                      (jnp.arange(num_levels), jax.random.split(key, num_levels)))
  return jnp.clip(x, 0.0, 1.0)
