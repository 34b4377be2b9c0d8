"""The annealing schedule: σ ladder, steps per level, step sizes, likelihood weights.

Paper notation: levels i = 1..L with σ_1 > … > σ_L, T Langevin steps per level,
step size η_i = δ·σ_i²/σ_L², likelihood variance γ_i² (σ_i² by default) and a
likelihood weight w multiplying the data term (the reference MNIST runner's w=2 comes
from differentiating ‖g(x) − m‖² without the ½; the colorization runner uses 1.5).
Every field is a static Python value: the scan length comes from here.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from basis_jax.errors import ConfigError


def geometric_sigmas(sigma_max: float, sigma_min: float, num_levels: int) -> tuple[float, ...]:
  """σ ladder exp(linspace(log σ_max, log σ_min, L)), as NCSN and BASIS use."""
  if num_levels < 1:
    raise ConfigError(f"num_levels must be >= 1, got {num_levels}.")
  if not 0 < sigma_min <= sigma_max:
    raise ConfigError(f"Need 0 < sigma_min <= sigma_max, got {sigma_min}, {sigma_max}.")
  return tuple(float(s) for s in np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min),
                                                    num_levels)))


@dataclasses.dataclass(frozen=True)
class Schedule:
  """A validated annealing schedule."""

  sigmas: tuple[float, ...]
  steps_per_level: int
  step_lr: float  # δ in η_i = δ·σ_i²/σ_L².
  likelihood_weight: float = 1.0  # w.
  gammas: tuple[float, ...] | None = None  # Likelihood std γ_i; None means γ_i = σ_i.

  def __post_init__(self):
    sigmas = tuple(float(s) for s in self.sigmas)
    object.__setattr__(self, "sigmas", sigmas)
    if not sigmas:
      raise ConfigError("The σ ladder is empty.")
    if not all(np.isfinite(s) and s > 0 for s in sigmas):
      raise ConfigError(f"Every σ must be finite and positive, got {sigmas}.")
    if any(b >= a for a, b in zip(sigmas, sigmas[1:])):
      raise ConfigError(f"The σ ladder must be strictly decreasing, got {sigmas}.")
    if int(self.steps_per_level) != self.steps_per_level or self.steps_per_level < 1:
      raise ConfigError(f"steps_per_level (T) must be an integer >= 1, got {self.steps_per_level}.")
    object.__setattr__(self, "steps_per_level", int(self.steps_per_level))
    if not (np.isfinite(self.step_lr) and self.step_lr > 0):
      raise ConfigError(f"step_lr (δ) must be positive, got {self.step_lr}.")
    if not (np.isfinite(self.likelihood_weight) and self.likelihood_weight >= 0):
      raise ConfigError(f"likelihood_weight (w) must be >= 0, got {self.likelihood_weight}.")
    if self.gammas is not None:
      gammas = tuple(float(g) for g in self.gammas)
      if len(gammas) != len(sigmas):
        raise ConfigError(f"gammas has {len(gammas)} entries but there are {len(sigmas)} levels.")
      if not all(np.isfinite(g) and g > 0 for g in gammas):
        raise ConfigError(f"Every γ must be finite and positive, got {gammas}.")
      object.__setattr__(self, "gammas", gammas)

  @property
  def num_levels(self) -> int:
    return len(self.sigmas)

  @property
  def num_steps(self) -> int:
    return self.num_levels * self.steps_per_level

  def step_sizes(self) -> np.ndarray:
    """η_i = δ·σ_i²/σ_L², one per level."""
    sigmas = np.asarray(self.sigmas, np.float64)
    return (self.step_lr * sigmas**2 / sigmas[-1]**2).astype(np.float32)

  def likelihood_variances(self) -> np.ndarray:
    """γ_i², one per level."""
    gammas = np.asarray(self.gammas if self.gammas is not None else self.sigmas, np.float64)
    return (gammas**2).astype(np.float32)


def from_config(config) -> Schedule:
  """Builds a Schedule from a `config.schedule` section, reading each of its fields.

  Either `sigmas` (an explicit list) or `sigma_max`, `sigma_min`, `num_levels`; a missing
  field is refused (configs/base_separation.py sets each).
  """
  def read(name):
    try:
      return config[name]
    except (KeyError, AttributeError):
      raise ConfigError(f"config.schedule has no field {name!r}.",
                        hint="every separation config starts from configs/base_separation.py, "
                             "which sets each field.") from None

  sigmas: Sequence[float] = tuple(read("sigmas") or ())
  if not sigmas:
    sigmas = geometric_sigmas(read("sigma_max"), read("sigma_min"), read("num_levels"))
  gammas = read("gammas")
  return Schedule(
      sigmas=sigmas,
      steps_per_level=read("steps_per_level"),
      step_lr=read("step_lr"),
      likelihood_weight=read("likelihood_weight"),
      gammas=tuple(gammas) if gammas else None,
  )
