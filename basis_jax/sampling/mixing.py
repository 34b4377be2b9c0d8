"""Mixing operators g: components x [k, H, W, C] of ONE mixture -> the observation m.

The sampler needs, for each operator, g itself and the likelihood direction
J_gᵀ (m − g(x)), the gradient of −½‖m − g(x)‖² with respect to x. `Generic` gets it
from `jax.vjp`, so any differentiable g works (for example the clipped sum
min(x₁ + x₂, 1) the paper leaves as future work). `Sum` and `Grayscale` are linear and
use their explicit adjoints, which avoids a vjp per step; tests check the two paths agree.
Linear operators can also project onto {x : g(x) = m} (the hard-constraint variant).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from basis_jax import errors
from basis_jax.errors import ConfigError


class MixingOperator:
  """Base: subclasses define `num_components`, `__call__` and optionally the rest."""

  num_components: int
  is_linear: bool = False

  def __call__(self, x: jax.Array) -> jax.Array:
    raise NotImplementedError

  def mixture_shape(self, component_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of g(x) for components of `component_shape`, computed without FLOPs."""
    x = jax.ShapeDtypeStruct((self.num_components, *component_shape), jnp.float32)
    return tuple(jax.eval_shape(self, x).shape)

  def adjoint(self, x: jax.Array, residual: jax.Array) -> jax.Array:
    """J_g(x)ᵀ · residual, by reverse-mode autodiff (exact for any differentiable g)."""
    _, vjp = jax.vjp(self, x)
    (direction,) = vjp(residual)
    return direction

  def likelihood_direction(self, x: jax.Array, mixture: jax.Array) -> jax.Array:
    """J_gᵀ (m − g(x)): the Gaussian log-likelihood gradient times γ²."""
    return self.adjoint(x, mixture - self(x))

  def project(self, x: jax.Array, mixture: jax.Array) -> jax.Array:
    """Closest x' to x with g(x') = m (linear operators only)."""
    raise ConfigError(f"{type(self).__name__} is not linear: the hard-constraint projection "
                      "is only defined for linear mixing operators (Sum, Grayscale).")


@dataclasses.dataclass(frozen=True)
class Sum(MixingOperator):
  """m = Σ_j α_j x_j. α = (1, 1) is the paper's NCSN sum, (½, ½) Glow's average."""

  alphas: tuple[float, ...]
  is_linear = True

  def __post_init__(self):
    alphas = tuple(float(a) for a in self.alphas)
    if len(alphas) < 1:
      raise ConfigError("Sum needs at least one component (k >= 1); got no alphas.")
    if not all(jnp.isfinite(a) for a in alphas):
      raise ConfigError(f"Mixing gains must be finite, got {alphas}.")
    if all(a == 0 for a in alphas):
      raise ConfigError("At least one mixing gain must be non-zero.")
    object.__setattr__(self, "alphas", alphas)

  @property
  def num_components(self) -> int:
    return len(self.alphas)

  def _gains(self, x):
    return jnp.asarray(self.alphas, x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))

  def __call__(self, x):
    return jnp.sum(self._gains(x) * x, axis=0)

  def adjoint(self, x, residual):
    return self._gains(x) * residual[None]

  def project(self, x, mixture):
    gains = self._gains(x)
    return x + gains * ((mixture - self(x)) / jnp.sum(gains**2))[None]


@dataclasses.dataclass(frozen=True)
class Grayscale(MixingOperator):
  """Colorization: one RGB component, m = mean over its channels ([H, W, 1])."""

  num_components: int = 1
  is_linear = True

  def __post_init__(self):
    if self.num_components != 1:
      raise ConfigError(f"Grayscale mixes exactly one component, got {self.num_components}.")

  def __call__(self, x):
    if x.shape[-1] != 3:
      raise ConfigError(f"Grayscale needs 3-channel components, got shape {x.shape}.")
    return jnp.mean(x[0], axis=-1, keepdims=True)

  def adjoint(self, x, residual):
    return jnp.broadcast_to(residual / 3.0, x.shape)

  def project(self, x, mixture):
    # A = mean over channels, A Aᵀ = 1/3, so Aᵀ(A Aᵀ)⁻¹ r adds r to every channel.
    return x + (mixture - self(x))[None]


@dataclasses.dataclass(frozen=True)
class Generic(MixingOperator):
  """Any differentiable g(x) with x [k, H, W, C]; the adjoint comes from jax.vjp."""

  fn: Callable[[jax.Array], jax.Array]
  num_components: int = 2

  def __post_init__(self):
    if self.num_components < 1:
      raise ConfigError(f"num_components (k) must be >= 1, got {self.num_components}.")

  def __call__(self, x):
    return self.fn(x)


def clipped_sum(x: jax.Array) -> jax.Array:
  """min(Σ_j x_j, 1): a saturating mixture, non-linear where the sum exceeds 1."""
  return jnp.minimum(jnp.sum(x, axis=0), 1.0)


GENERIC_FUNCTIONS = {"clipped_sum": clipped_sum}


def mix(operator: MixingOperator, components) -> np.ndarray:
  """Mixtures [N, ...] of ground truth [N, k, H, W, C]: g itself, one mixture at a time."""
  return np.asarray(jax.vmap(operator)(components))


def residual_norm(operator: MixingOperator, x: jax.Array, mixtures: jax.Array) -> jax.Array:
  """‖g(x_i) − m_i‖ per row of x [M, k, H, W, C] and mixtures [M, ...] -> [M]: how far a
  candidate separation is from reproducing its mixture."""
  residual = jax.vmap(lambda xi, m: operator(xi) - m)(x, mixtures)
  return jnp.sqrt(jnp.sum(residual.reshape(x.shape[0], -1)**2, axis=-1))


def from_config(config, num_components: int | None = None) -> MixingOperator:
  """Builds the operator named by `config.mixing.kind`."""
  kind = config.kind
  if kind == "sum":
    alphas: Sequence[float] = tuple(config.alphas)
    if num_components is not None and len(alphas) != num_components:
      raise ConfigError(f"mixing.alphas has {len(alphas)} entries but num_components is "
                        f"{num_components}.")
    return Sum(alphas)
  if kind == "grayscale":
    return Grayscale()
  if kind in GENERIC_FUNCTIONS:
    if any(float(a) != 1.0 for a in config.alphas):
      # The saved alphas drive the Average baseline; gains g ignores would skew it silently.
      raise errors.ConfigError(f"mixing.kind={kind!r} has unit gains, but mixing.alphas is "
                               f"{tuple(config.alphas)}; set every α to 1.")
    return Generic(GENERIC_FUNCTIONS[kind], num_components=num_components or len(config.alphas))
  raise ConfigError(f"Unknown mixing kind {kind!r}; known: sum, grayscale, "
                    f"{', '.join(sorted(GENERIC_FUNCTIONS))}.")
