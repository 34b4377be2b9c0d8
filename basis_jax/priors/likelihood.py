"""Log-likelihoods of σ-conditioned score priors: the denoising bound and the probability-flow ODE.

A score network s(x, σ) ≈ ∇ log p_σ(x), p_σ = p_data ∗ N(0, σ²I), defines a
variance-exploding diffusion from σ_min to σ_max. docs/likelihood.md derives both estimates:

- the denoising bound, an upper bound on −log p(x) in nats (D pixels): x is noised by ν,
  the network queried at σ² = σ_0² + ν²,

      L(x) = E_ε[−log π(x + ν_T ε)] − ∫_{ν_0}^{ν_T} E_ε(D − ‖ν s(x + νε, σ) + ε‖²) d log ν

  with π = N(0, σ_max² I). Form 'data' (default): σ_0 = 0, ν from σ_min to σ_max; the
  integrand is D minus twice the training loss of `training/dsm.py`, which draws log σ uniformly, so
  training minimises exactly this bound (the likelihood weighting); p is p_σmin ∗ N(0, σ_min²).
  Form 'marginal': σ_0 = σ_min, ν = τ from σ_min/100 to √(σ_max² − σ_min²); p is p_σmin, the
  ODE's density. Estimated with K levels stratified in log ν, N noise draws at each.
- the probability-flow ODE dx/d log σ = −σ² s(x, σ) from σ_min to σ_max, whose log-density
  change is the integral of the divergence (Hutchinson's estimator): log p_σmin(x), an
  estimate rather than a bound, and the independent check of the first (run it from √2·σ_min
  to compare with form 'data': p_σmin ∗ N(0, σ_min²) = p_√2σmin for exact scores).

Random numbers come from the seed alone, and every image of a batch sees the same σ's, noise
and probes (common random numbers): an image's estimate depends on the image only, never on
its batch neighbours, so the S candidates of a mixture are compared under identical noise and
the differences between them carry little of the Monte Carlo error.

    score_fn(params, x [B, H, W, C], sigma [B]) -> [B, H, W, C]      (score_unet.make_score_fn)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from basis_jax.files import checkpoint_io
from basis_jax.errors import ConfigError

SigmaScoreFn = Callable[[Any, jax.Array, jax.Array], jax.Array]
CONFIG_KEY = "config.prior.likelihood"
METHODS = ("euler", "heun", "rk4")
PROBES = ("rademacher", "gaussian", "exact")
FORMS = ("data", "marginal")
# Pixel variance of the control variate (MNIST's is 0.095); only the variance depends on it.
CONTROL_VARIANCE = 0.1
# The added noise τ starts at σ_min/100: below it the integrand is O(τ²) and the part left
# out ≲ 1e-4 nats per pixel (docs/likelihood.md).
TAU_FLOOR = 0.01


@dataclasses.dataclass(frozen=True)
class BoundSettings:
  """The denoising bound's σ range, K noise levels (stratified in log), N noise draws each.

  form 'data': x is a data point, noised by σ from σ_min up (the training loss; it bounds
  −log of p_σmin ∗ N(0, σ_min²), the decoder's Gaussian on top); 'marginal': x is a point of
  p_σmin, noised by τ from ~0 up (it bounds −log p_σmin, the density the ODE computes).
  Defaults: docs/likelihood.md (chosen on held-out training digits).
  """

  sigma_min: float = 0.005
  sigma_max: float = 17.0
  num_sigmas: int = 64
  num_noise: int = 1
  seed: int = 0
  form: str = "data"

  def __post_init__(self):
    if self.form not in FORMS:
      raise ConfigError(f"{CONFIG_KEY}.form must be one of {FORMS}, got {self.form!r}.")
    for name in ("num_sigmas", "num_noise"):
      value = getattr(self, name)
      if isinstance(value, bool) or int(value) != value or value < 1:
        raise ConfigError(f"{CONFIG_KEY}.{name} must be an integer ≥ 1, got {value!r}.")
    if not 0 < self.sigma_min < self.sigma_max:
      raise ConfigError(f"{CONFIG_KEY} needs 0 < sigma_min < sigma_max, got "
                        f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max}.")


@dataclasses.dataclass(frozen=True)
class OdeSettings:
  """Probability-flow ODE: fixed steps uniform in log σ; Hutchinson probes shared by the batch.

  probe 'exact' uses the D unit vectors as probes (the exact divergence; small D only).
  """

  sigma_min: float = 0.005
  sigma_max: float = 17.0
  num_steps: int = 16
  method: str = "rk4"
  num_probes: int = 1
  probe: str = "rademacher"
  seed: int = 0

  def __post_init__(self):
    if self.method not in METHODS or self.probe not in PROBES:
      raise ConfigError(f"ODE method must be one of {METHODS} and probe one of {PROBES}; got "
                        f"{self.method!r}, {self.probe!r}.")
    if self.num_steps < 1 or self.num_probes < 1:
      raise ConfigError(f"ODE num_steps and num_probes must be ≥ 1, got {self.num_steps}, "
                        f"{self.num_probes}.")
    if not 0 < self.sigma_min < self.sigma_max:
      raise ConfigError(f"ODE needs 0 < sigma_min < sigma_max, got {self.sigma_min}, "
                        f"{self.sigma_max}.")


def noise_range(settings: BoundSettings) -> tuple[float, float, float]:
  """(lowest, highest added noise, σ² already in x): the added noise runs over [lo, hi] and
  the network is queried at σ² = base + noise²."""
  if settings.form == "data":
    return settings.sigma_min, settings.sigma_max, 0.0
  top = math.sqrt(settings.sigma_max ** 2 - settings.sigma_min ** 2)
  return TAU_FLOOR * settings.sigma_min, top, settings.sigma_min ** 2


def bound_draws(settings: BoundSettings, image_shape: Sequence[int]):
  """(noise levels [K], ε [K, N, *image_shape]) from the seed alone: level k at (k + u_k)/K of
  the log range."""
  key_u, key_eps = jax.random.split(jax.random.key(settings.seed))
  k = settings.num_sigmas
  position = (jnp.arange(k) + jax.random.uniform(key_u, (k,))) / k
  lo, hi, _ = noise_range(settings)
  levels = jnp.exp(math.log(lo) + math.log(hi / lo) * position)
  eps = jax.random.normal(key_eps, (k, settings.num_noise) + tuple(image_shape), jnp.float32)
  return levels, eps


def denoising_bound(score_fn: SigmaScoreFn, params, x, settings: BoundSettings):
  """The bound L(x) ≥ −log p(x) in nats per image, x [B, H, W, C] -> [B] (module doc; p is
  p_σmin for form 'marginal', p_σmin ∗ N(0, σ_min²) for 'data')."""
  x = jnp.asarray(x, jnp.float32)
  batch, d = x.shape[0], math.prod(x.shape[1:])
  levels, eps = bound_draws(settings, x.shape[1:])
  lo, hi, base_sq = noise_range(settings)

  def one_level(total, inputs):
    tau, noise = inputs  # noise [N, H, W, C], the same for every image.
    sigma_sq = base_sq + tau ** 2
    noisy = (x[None] + tau * noise[:, None]).reshape((-1,) + x.shape[1:])
    scores = score_fn(params, noisy, jnp.full((noisy.shape[0],), jnp.sqrt(sigma_sq)))
    residual = tau * scores.astype(jnp.float32).reshape((-1, batch) + x.shape[1:]) + (
        noise[:, None])
    sq = jnp.sum(jnp.square(residual).reshape(residual.shape[:2] + (-1,)), axis=-1)
    # Control variate β(‖ε‖² − D), mean zero: where the data still show, τs + ε ≈ cε with
    # c = (v + base)/(v + σ²) (exact for Gaussian data of variance v), so β = c² removes
    # most of ‖ε‖²'s variance (2D per draw). Any β keeps the estimate unbiased.
    beta = jnp.square((CONTROL_VARIANCE + base_sq) / (CONTROL_VARIANCE + sigma_sq))
    noise_sq = jnp.sum(jnp.square(noise).reshape(noise.shape[0], 1, -1), axis=-1)
    return total + jnp.mean(d - sq + beta * (noise_sq - d), axis=0), None

  total, _ = jax.lax.scan(one_level, jnp.zeros((batch,), jnp.float32), (levels, eps))
  gain = total / settings.num_sigmas * math.log(hi / lo)
  # E_ε[−log π(x + hi·ε)], π = N(0, σ_max² I) (hi = σ_max for form 'data').
  sq_x = jnp.sum(jnp.square(x).reshape(batch, -1), axis=-1)
  prior_nll = (0.5 * d * math.log(2 * math.pi * settings.sigma_max ** 2)
               + 0.5 * (sq_x + d * hi ** 2) / settings.sigma_max ** 2)
  return prior_nll - gain


def bound_log_density_fn(score_fn: SigmaScoreFn, settings: BoundSettings):
  """`log_density_fn(params, x, level) -> [B]` (the Prior interface): −L(x) in nats.

  `level` is ignored: the bound integrates over its own σ range, whatever the schedule.
  """

  def log_density_fn(params, x, level):
    del level
    return -denoising_bound(score_fn, params, x, settings)

  return log_density_fn


def _probes(settings: OdeSettings, image_shape: Sequence[int]):
  """(probes [P, *image_shape], weight): div ≈ weight · Σ_p pᵀ J p."""
  d = math.prod(image_shape)
  if settings.probe == "exact":
    return jnp.eye(d, dtype=jnp.float32).reshape((d,) + tuple(image_shape)), 1.0
  key = jax.random.key(settings.seed)
  shape = (settings.num_probes,) + tuple(image_shape)
  if settings.probe == "rademacher":
    probes = jax.random.rademacher(key, shape, jnp.float32)
  else:
    probes = jax.random.normal(key, shape, jnp.float32)
  return probes, 1.0 / settings.num_probes


def ode_log_likelihood(score_fn: SigmaScoreFn, params, x, settings: OdeSettings):
  """log p_σmin(x) in nats by the probability-flow ODE, x [B, H, W, C] -> [B].

  Integrates (x, ℓ) in t = log σ from σ_min to σ_max: dx/dt = v = −σ² s(x, σ), dℓ/dt = ∇·v;
  then log p_σmin(x) = log π(x(σ_max)) + ℓ(σ_max), π = N(0, σ_max² I).
  """
  x = jnp.asarray(x, jnp.float32)
  batch = x.shape[0]
  probes, weight = _probes(settings, x.shape[1:])
  lo, hi = math.log(settings.sigma_min), math.log(settings.sigma_max)
  h = (hi - lo) / settings.num_steps

  def drift(y, t):
    sigma = jnp.exp(t)
    velocity = lambda z: -sigma ** 2 * score_fn(params, z, jnp.full((batch,), sigma)).astype(
        jnp.float32)
    v, jvp = jax.linearize(velocity, y)

    def quad(total, probe):
      jp = jvp(jnp.broadcast_to(probe, y.shape))
      return total + jnp.sum((probe * jp).reshape(batch, -1), axis=-1), None

    div, _ = jax.lax.scan(quad, jnp.zeros((batch,), jnp.float32), probes)
    return v, weight * div

  def step(state, t):
    y, ell = state
    k1 = drift(y, t)
    if settings.method == "euler":
      dy, dl = k1
    elif settings.method == "heun":
      k2 = drift(y + h * k1[0], t + h)
      dy, dl = (k1[0] + k2[0]) / 2, (k1[1] + k2[1]) / 2
    else:
      k2 = drift(y + h / 2 * k1[0], t + h / 2)
      k3 = drift(y + h / 2 * k2[0], t + h / 2)
      k4 = drift(y + h * k3[0], t + h)
      dy = (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0]) / 6
      dl = (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1]) / 6
    return (y + h * dy, ell + h * dl), None

  times = lo + h * jnp.arange(settings.num_steps)
  (y, ell), _ = jax.lax.scan(step, (x, jnp.zeros((batch,), jnp.float32)), times)
  d = math.prod(x.shape[1:])
  sq = jnp.sum(jnp.square(y).reshape(batch, -1), axis=-1)
  log_prior = -0.5 * d * math.log(2 * math.pi * settings.sigma_max ** 2) - (
      0.5 * sq / settings.sigma_max ** 2)
  return log_prior + ell


def dequantize_8bit(images, key):
  """[0, 1] images -> (u + U(0, 1))/256 with u their 8-bit pixel values (round(255·x)).

  The training's dequantisation (dsm.dequantize): a density on [0, 1]^D of these points
  is a density of the 8-bit images with each pixel's 1/256 cell spread uniformly.
  """
  u = jnp.clip(jnp.round(jnp.asarray(images, jnp.float32) * 255.0), 0, 255)
  return (u + jax.random.uniform(key, u.shape, jnp.float32)) / 256.0


def bits_per_dim(nll_nats, num_dims: int, num_bits: int = 8):
  """Bits per dimension of 8-bit data from −log p (nats) of its dequantised points in [0, 1]^D.

  Pixel cells have side 2^−bits in [0, 1], so P(u) ≥ exp(E log p) · 2^(−bits·D) (Jensen over
  the uniform dequantisation): bits/dim = nll / (D ln 2) + bits, an upper bound.
  """
  return np.asarray(nll_nats) / (num_dims * math.log(2)) + num_bits


def settings_from_config(likelihood_config) -> BoundSettings:
  """BoundSettings from `config.prior.likelihood` (None or missing keys: the defaults)."""
  given = (likelihood_config.to_dict() if hasattr(likelihood_config, "to_dict")
           else dict(likelihood_config or {}))
  known = {f.name for f in dataclasses.fields(BoundSettings)}
  unknown = sorted(set(given) - known)
  if unknown:
    raise ConfigError(f"Unknown {CONFIG_KEY} keys {unknown}; known: {sorted(known)}.")
  return BoundSettings(**given)



def log_density_from_config(score_fn: SigmaScoreFn, prior_config, weights: str | None):
  """The bound as a prior's `log_density_fn`, from `config.prior.likelihood`; its σ range
  must lie in the `sigma_range` recorded in the weights file (the one σ policy,
  `priors.base.check_sigmas`)."""
  settings = settings_from_config(prior_config["likelihood"])
  if weights:
    from basis_jax.priors import base  # pylint: disable=import-outside-toplevel
    base.check_sigmas((settings.sigma_min, settings.sigma_max), weights,
                      sigma_range=checkpoint_io.read_metadata(weights).get("sigma_range"),
                      prior_config=prior_config, asked_by=f"{CONFIG_KEY} (the bound)")
  return bound_log_density_fn(score_fn, settings)


def require_log_density(priors, what: str = "config.select='likelihood'") -> None:
  """Refuses priors without a `log_density_fn`, naming them."""
  missing = sorted({p.name for p in priors if p.log_density_fn is None})
  if missing:
    raise ConfigError(
        f"{what} needs the prior's likelihood, and the {', '.join(missing)} prior has none.",
        hint="use a prior with a likelihood (score_unet: the denoising bound; glow), or "
             "select='residual' / 'none'.")
