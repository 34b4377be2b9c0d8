"""The optimizer the score networks are trained with: settings from `config.optim`, the
learning-rate schedule (warm-up, optional cool-down), the optax transformation.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import optax

from basis_jax.errors import ConfigError


class OptimizerSettings(NamedTuple):
  """The static optimizer settings (hashable: the jitted step is cached on them)."""
  lr: float
  beta1: float
  beta2: float
  eps: float
  grad_clip: float
  warmup_steps: int
  decay_start: int
  decay_steps: int
  final_lr_factor: float


def settings_from_config(optim) -> OptimizerSettings:
  """Adam as the reference trains (lr 1e-3, β (0.9, 0.999)); optional linear warm-up,
  global-norm clip and a final linear cool-down (see `learning_rate`)."""
  o = OptimizerSettings(
      float(optim.lr), float(optim.beta1), float(optim.beta2), float(optim.eps),
      float(optim.get("grad_clip", 0.0)), int(optim.get("warmup_steps", 0)),
      int(optim.get("decay_start", 0)), int(optim.get("decay_steps", 0)),
      float(optim.get("final_lr_factor", 0.0)))
  if o.decay_steps < 0 or not 0.0 <= o.final_lr_factor <= 1.0:
    raise ConfigError(f"config.optim needs decay_steps >= 0 and 0 <= final_lr_factor <= 1, got "
                      f"decay_steps={o.decay_steps}, final_lr_factor={o.final_lr_factor}.")
  if o.decay_steps and o.decay_start < o.warmup_steps:
    raise ConfigError(f"config.optim.decay_start={o.decay_start} lies inside the warm-up "
                      f"({o.warmup_steps} steps): the cool-down starts after it.")
  return o


def learning_rate(o: OptimizerSettings):
  """The learning rate per update count: a float, or a schedule of the count.

  Linear warm-up from lr/warmup over `warmup_steps`, then lr; with `decay_steps` > 0, from
  update `decay_start` on lr falls linearly to lr·final_lr_factor over `decay_steps` updates
  and stays there (the 'cool-down' of a warm-up/stable/decay schedule: a run continues from
  the state saved before `decay_start`, and the cooled-down weights are a branch of it).
  """
  rate = (optax.linear_schedule(o.lr / o.warmup_steps, o.lr, o.warmup_steps)
          if o.warmup_steps else o.lr)
  if not o.decay_steps:
    return rate

  def schedule(count):
    progress = jnp.clip((count - o.decay_start) / o.decay_steps, 0.0, 1.0)
    scale = 1.0 - (1.0 - o.final_lr_factor) * progress
    return (rate(count) if callable(rate) else rate) * scale

  return schedule


def make(o: OptimizerSettings) -> optax.GradientTransformation:
  """The optax transformation of `o`: Adam, after a global-norm clip when grad_clip > 0."""
  tx = optax.adam(learning_rate(o), b1=o.beta1, b2=o.beta2, eps=o.eps)
  return optax.chain(optax.clip_by_global_norm(o.grad_clip), tx) if o.grad_clip else tx
