"""Best-of-N after the fact: choose among the S samples of a finished run (the paper's
"Glow 10×").

A run with `config.select` chooses inside the compiled separation (basis_jax/selection.py);
this module applies the same likelihood ranking (`selection.make_rank_fn`) to the samples of
a run that kept all S (`config.select='none'`): for every mixture, argmax_s Σ_j log p(x_{s,j})
under the run's prior(s), scored at the schedule's last σ. Works with any prior that exposes
`log_density_fn`; images are scored a fixed-size chunk at a time (one compilation), so N·S
may exceed device memory.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from basis_jax import selection
from basis_jax.priors.base import Prior


def select_best_for_priors(samples, priors: Sequence[Prior], num_levels: int | None = None,
                           level: int | None = None, chunk_size: int = 256):
  """samples [N, S, k, H, W, C] -> (best [N, k, H, W, C], index [N], scores [N, S]).

  `num_levels`: the run's schedule length (a σ-conditioned prior fits any ladder, so only
  the schedule knows its last level); needed unless the priors were trained for a fixed
  number of levels or `level` is given. `chunk_size`: samples (of k images each) scored at
  a time.

  `samples` are in the dataset's space (separations.npz); they are scored in the priors'
  (`Prior.to_prior`) and the chosen ones returned as given.
  """
  samples = np.asarray(samples)
  if samples.ndim != 6:
    raise ValueError(f"samples must be [N, S, k, H, W, C], got shape {samples.shape}.")
  missing = [p.name for p in priors if p.log_density_fn is None]
  if missing:
    raise ValueError(f"Best-of-N needs a prior log-density; {missing} expose none.")
  if len(priors) != samples.shape[2]:
    raise ValueError(f"{len(priors)} priors for {samples.shape[2]} components.")
  if level is None:
    num_levels = num_levels or priors[0].num_levels
    if num_levels is None:
      raise ValueError(f"Best-of-N scores at the schedule's last σ, but the {priors[0].name} "
                       "prior fits any ladder: pass the schedule's num_levels.")
    level = num_levels - 1
  rank = jax.jit(selection.make_rank_fn("likelihood", priors, None, num_levels=level + 1))
  shared = all(p is priors[0] for p in priors)
  params = priors[0].params if shared else tuple(p.params for p in priors)
  n, s = samples.shape[:2]
  flat = np.asarray(priors[0].to_prior(samples)).reshape((n * s,) + samples.shape[2:])
  scores = []
  for start in range(0, len(flat), chunk_size):
    chunk = flat[start:start + chunk_size]
    pad = chunk_size - len(chunk) if len(flat) > chunk_size else 0
    if pad:  # Every chunk has the same shape: one compilation.
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
    scores.append(np.asarray(rank(params, jnp.asarray(chunk), None))[:len(chunk) - pad])
  scores = np.concatenate(scores).reshape(n, s)
  if not np.all(np.isfinite(scores)):
    bad = np.argwhere(~np.isfinite(scores))[0]
    raise FloatingPointError(f"Non-finite prior log-density for mixture {bad[0]}, sample "
                             f"{bad[1]}; the samples or the prior are broken.")
  index = np.argmax(scores, axis=1)
  return samples[np.arange(n), index], index, scores
