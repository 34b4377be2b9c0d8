"""The one optimizer factory of the trainers that take `config.optim` (score networks and
the classifier): settings from the config, the learning-rate schedule (warm-up, optional
cool-down), the optax transformation. (Glow feeds its rate per step into Adamax:
`glow_training.make_optimizer`.)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
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
  name: str = "adam"  # Or "sgd_nesterov" (the classifier).
  momentum: float = 0.9  # sgd_nesterov only.
  weight_decay: float = 0.0  # Decoupled, on kernels (ndim > 1) only.


NAMES = ("adam", "sgd_nesterov")


def settings_from_config(optim) -> OptimizerSettings:
  """Adam as the reference trains (lr 1e-3, β (0.9, 0.999)) or SGD with Nesterov momentum;
  optional linear warm-up, global-norm clip, weight decay and a final linear cool-down
  (see `learning_rate`)."""
  o = OptimizerSettings(
      float(optim.lr), float(optim.get("beta1", 0.9)), float(optim.get("beta2", 0.999)),
      float(optim.get("eps", 1e-8)),
      float(optim.get("grad_clip", 0.0)), int(optim.get("warmup_steps", 0)),
      int(optim.get("decay_start", 0)), int(optim.get("decay_steps", 0)),
      float(optim.get("final_lr_factor", 0.0)), str(optim.get("name", "adam")),
      float(optim.get("momentum", 0.9)), float(optim.get("weight_decay", 0.0)))
  if o.name not in NAMES:
    raise ConfigError(f"config.optim.name={o.name!r} is not one of {NAMES}.")
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
  """The optax transformation of `o`: Adam or SGD with Nesterov momentum, after a
  global-norm clip when grad_clip > 0 and weight decay on the kernels when weight_decay > 0.
  (Adam without decay is the chain the committed score-network states were saved with.)"""
  rate = learning_rate(o)
  if o.name == "adam":
    tx = optax.adam(rate, b1=o.beta1, b2=o.beta2, eps=o.eps)
  else:
    tx = optax.sgd(rate, momentum=o.momentum, nesterov=True)
  parts = [optax.clip_by_global_norm(o.grad_clip)] if o.grad_clip else []
  if o.weight_decay:
    kernels = lambda params: jax.tree_util.tree_map(lambda p: p.ndim > 1, params)
    parts.append(optax.add_decayed_weights(o.weight_decay, mask=kernels))
  return optax.chain(*parts, tx) if parts else tx
