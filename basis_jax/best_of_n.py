"""Best-of-N posterior samples (the paper's "Glow 10×").

Draw S posterior samples per mixture (the sampler's `num_samples`), then keep, for every
mixture, the sample whose components are most likely under the prior at the last (smallest)
σ: argmax_s Σ_j log p_σL(x_{s,j}). Works with any prior that exposes `log_density_fn`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from basis_jax.priors.base import Prior, _identity_level

LogDensityFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


def select_best(samples, log_density_fn: LogDensityFn | Sequence[LogDensityFn], params, *,
                level: int, select_level=None, chunk_size: int = 256):
  """samples [N, S, k, H, W, C] -> (best [N, k, H, W, C], index [N], scores [N, S]).

  `log_density_fn(select_level(params, level), x, level) -> [B]` scores a batch of
  component images. Pass one function shared by all components, or a sequence of k
  (then `params` and `select_level` are sequences of k too, as for per-component priors).
  Images are scored `chunk_size` at a time, so S·N·k may exceed device memory.
  """
  samples = np.asarray(samples)
  if samples.ndim != 6:
    raise ValueError(f"samples must be [N, S, k, H, W, C], got shape {samples.shape}.")
  n, s, k = samples.shape[:3]
  if isinstance(log_density_fn, (list, tuple)):
    if len(log_density_fn) != k:
      raise ValueError(f"{len(log_density_fn)} log-density functions for {k} components.")
    selects = select_level if isinstance(select_level, (list, tuple)) else \
        [select_level or _identity_level] * k
    per_component = [
        _score(samples[:, :, j], fn, sel(p, level), level, chunk_size)
        for j, (fn, p, sel) in enumerate(zip(log_density_fn, params, selects))]
    scores = np.sum(per_component, axis=0)
  else:
    level_params = (select_level or _identity_level)(params, level)
    per_image = _score(samples.reshape((n, s * k) + samples.shape[3:]), log_density_fn,
                       level_params, level, chunk_size)
    scores = per_image.reshape(n, s, k).sum(axis=-1)
  if not np.all(np.isfinite(scores)):
    bad = np.argwhere(~np.isfinite(scores))[0]
    raise FloatingPointError(f"Non-finite prior log-density for mixture {bad[0]}, sample "
                             f"{bad[1]}; the samples or the prior are broken.")
  index = np.argmax(scores, axis=1)
  return samples[np.arange(n), index], index, scores


def select_by_residual(samples, residual_norm):
  """samples [N, S, k, H, W, C], residual_norm [N, S] -> (best [N, k, H, W, C], index [N]).

  No-oracle selection for any prior: keep the sample whose components reproduce the mixture
  best (smallest ‖g(x) − m‖, which the sampler reports per sample).
  """
  samples, residual_norm = np.asarray(samples), np.asarray(residual_norm)
  if samples.ndim != 6 or residual_norm.shape != samples.shape[:2]:
    raise ValueError(f"Need samples [N, S, k, H, W, C] and residual_norm [N, S]; got "
                     f"{samples.shape} and {residual_norm.shape}.")
  index = np.argmin(np.where(np.isfinite(residual_norm), residual_norm, np.inf), axis=1)
  return samples[np.arange(len(samples)), index], index


def select_best_for_priors(samples, priors: Sequence[Prior], num_levels: int | None = None,
                           level: int | None = None, chunk_size: int = 256):
  """`select_best` with the prior(s) of a separation run, at the schedule's last σ.

  `num_levels`: the run's schedule length (a σ-conditioned prior fits any ladder, so only
  the schedule knows its last level); needed unless the priors were trained for a fixed
  number of levels or `level` is given.

  `samples` are in the dataset's space (separations.npz); they are scored in the priors'
  (`Prior.to_prior`) and the chosen ones returned as given.
  """
  missing = [p.name for p in priors if p.log_density_fn is None]
  if missing:
    raise ValueError(f"Best-of-N needs a prior log-density; {missing} expose none.")
  samples = np.asarray(samples)
  in_prior_space = priors[0].to_prior(samples)
  if level is None:
    num_levels = num_levels or priors[0].num_levels
    if num_levels is None:
      raise ValueError(f"Best-of-N scores at the schedule's last σ, but the {priors[0].name} "
                       "prior fits any ladder: pass the schedule's num_levels.")
    level = num_levels - 1
  if all(p is priors[0] for p in priors):
    p = priors[0]
    _, index, scores = select_best(in_prior_space, p.log_density_fn, p.params, level=level,
                                   select_level=p.select_level, chunk_size=chunk_size)
  else:
    _, index, scores = select_best(
        in_prior_space, [p.log_density_fn for p in priors], [p.params for p in priors],
        level=level, select_level=[p.select_level for p in priors], chunk_size=chunk_size)
  return samples[np.arange(len(samples)), index], index, scores


def _score(images, log_density_fn, level_params, level, chunk_size) -> np.ndarray:
  """log p for images [N, M, H, W, C] -> [N, M], in fixed-size chunks (one compilation)."""
  lead = images.shape[:2]
  flat = images.reshape((-1,) + images.shape[2:])
  fn = jax.jit(log_density_fn)
  level = jnp.int32(level)
  out = []
  for start in range(0, len(flat), chunk_size):
    chunk = flat[start:start + chunk_size]
    pad = chunk_size - len(chunk) if len(flat) > chunk_size else 0
    if pad:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
    out.append(np.asarray(fn(level_params, jnp.asarray(chunk), level))[:len(chunk) - pad])
  return np.concatenate(out).reshape(lead)
