"""The one optimizer factory of every trainer (score networks, the classifier, Glow):
settings from `config.optim` (whose defaults are in configs/base_training.py), the
learning-rate schedule (warm-up, optional cool-down) and the optax transformation. Glow
computes its rate on the host (a warm-up per σ stage, halved after a restart) and feeds it
into every step: `make(o, rate_per_step=True)` and `set_rate`.
"""

from __future__ import annotations

import functools
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


NAMES = ("adam", "sgd_nesterov", "adamax")
_TYPES = {"name": str, "warmup_steps": int, "decay_start": int, "decay_steps": int}


def settings_from_config(optim) -> OptimizerSettings:
  """Adam as the reference trains (lr 1e-3, β (0.9, 0.999)), SGD with Nesterov momentum, or
  Adamax; optional linear warm-up, global-norm clip, weight decay and a final linear
  cool-down (see `learning_rate`). Every field is read: a missing one is refused by name."""
  if optim is None:
    raise ConfigError("The config has no optim section.",
                      hint="start from configs/base_training.optim(...).")
  missing = [name for name in OptimizerSettings._fields if name not in optim]
  if missing:
    raise ConfigError(f"config.optim has no field(s) {missing}.",
                      hint="start from configs/base_training.optim(...), which sets them all.")
  o = OptimizerSettings(**{name: _TYPES.get(name, float)(optim[name])
                           for name in OptimizerSettings._fields})
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


def make(o: OptimizerSettings, *, rate_per_step: bool = False) -> optax.GradientTransformation:
  """The optax transformation of `o`: Adam, SGD with Nesterov momentum or Adamax, after a
  global-norm clip when grad_clip > 0 and weight decay on the kernels when weight_decay > 0.
  (Adam without decay is the chain the committed score-network states were saved with.)

  rate_per_step: the learning rate is not `learning_rate(o)` but an input of every update,
  set in the optimizer state with `set_rate` (one compiled step for any rate; Glow). The
  optimizer's numeric settings are injected beside it, as `optax.inject_hyperparams` does
  for every numeric argument: the state Glow's training states were saved with.
  """
  if o.name == "adam":
    factory, values = optax.adam, {"b1": o.beta1, "b2": o.beta2, "eps": o.eps}
  elif o.name == "adamax":
    factory, values = optax.adamax, {"b1": o.beta1, "b2": o.beta2, "eps": o.eps}
  else:
    factory, values = functools.partial(optax.sgd, nesterov=True), {"momentum": o.momentum}
  if rate_per_step:
    tx = optax.inject_hyperparams(factory)(learning_rate=0.0, **values)
  else:
    tx = factory(learning_rate(o), **values)
  parts = [optax.clip_by_global_norm(o.grad_clip)] if o.grad_clip else []
  if o.weight_decay:
    kernels = lambda params: jax.tree_util.tree_map(lambda p: p.ndim > 1, params)
    parts.append(optax.add_decayed_weights(o.weight_decay, mask=kernels))
  return optax.chain(*parts, tx) if parts else tx


def set_rate(opt_state, rate):
  """Sets the rate of the next update in the state of a `make(..., rate_per_step=True)`."""
  inject = opt_state[-1] if isinstance(opt_state, tuple) and not hasattr(
      opt_state, "hyperparams") else opt_state
  inject.hyperparams["learning_rate"] = jnp.asarray(rate, jnp.float32)
  return opt_state
