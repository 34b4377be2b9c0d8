"""Best of S: choosing one of S posterior samples per mixture, by one rule set.

The one place the concept lives. A run chooses inside the compiled separation (the
sampler's `rank_fn`, from `make_rank_fn`); `best_of_s` applies the same ranking after the
fact to a run that kept all S samples. The rules, both ways: a criterion scores every
sample (higher is better), a non-finite score ranks last (`rankable`), and the chosen
sample is the first of the highest (`choose`).

`config.select` names the criterion (`config.sampler.num_samples` is S):

- 'likelihood': Σ_j log p(x_j) under the component priors (`Prior.log_density_fn`: Glow's
  exact density at the schedule's last level, the score network's denoising bound,
  docs/likelihood.md). The paper's "Glow 10×", here for score priors too.
- 'residual': −‖g(x) − m‖ of the clamped components, for any prior. With the hard constraint
  every sample meets g(x) = m before the clamp, so this has little to choose by.
- 'none': no choice; `components` holds all S samples ([N, S, k, H, W, C]).

`config.sampler.prune_after` / `survivors` rank the chains early (after that many levels, on
their denoised states) and finish only the best few: most of the choice for a fraction of
the cost (docs/best_of_s.md measures both).

Scores are computed on every mixture's samples with the same random numbers (the bound's
draws come from its seed alone), so a mixture's choice never depends on its batch.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from basis_jax.priors import likelihood

from basis_jax.evaluation import metrics

from basis_jax.files import sharding
from basis_jax.sampling import mixing as mixing_lib
from basis_jax.errors import ConfigError, UserError
from basis_jax.priors.base import Prior

CRITERIA = ("likelihood", "residual", "none")
# rank_fn(params, x [M, k, H, W, C], mixtures [M, ...]) -> [M], higher is better.
RankFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


def rankable(scores):
  """Scores with every non-finite one set to −∞: a broken sample ranks last (jnp or np)."""
  xp = np if isinstance(scores, np.ndarray) else jnp
  return xp.where(xp.isfinite(scores), scores, -xp.inf)


def choose(scores):
  """The chosen sample of each row of scores [N, S]: the first of the highest (jnp or np)."""
  xp = np if isinstance(scores, np.ndarray) else jnp
  return xp.argmax(rankable(scores), axis=1).astype(xp.int32)


def check_criterion(criterion: str) -> str:
  if criterion not in CRITERIA:
    raise ConfigError(f"config.select must be one of {CRITERIA}, got {criterion!r}.")
  return criterion


def make_rank_fn(criterion: str, priors: Sequence[Prior], mixing: mixing_lib.MixingOperator,
                 num_levels: int) -> RankFn | None:
  """The sampler's `rank_fn` for `criterion` (None for 'none').

  Likelihood is scored at the schedule's last level (Glow's per-σ models; a σ-conditioned
  prior's bound integrates over its own σ range, whatever the level).
  """
  check_criterion(criterion)
  if criterion == "none":
    return None
  if criterion == "residual":

    def residual_rank(params, x, mixtures):
      del params
      return -mixing_lib.residual_norm(mixing, x, mixtures)

    return residual_rank

  likelihood.require_log_density(priors)
  last = num_levels - 1
  shared = all(p is priors[0] for p in priors)

  def likelihood_rank(params, x, mixtures):
    del mixtures
    m, k = x.shape[:2]
    if shared:
      prior = priors[0]
      flat = x.reshape((m * k,) + x.shape[2:])
      level_params = prior.select_level(params, last)
      return prior.log_density_fn(level_params, flat, jnp.int32(last)).reshape(m, k).sum(-1)
    return sum(p.log_density_fn(p.select_level(pp, last), x[:, j], jnp.int32(last))
               for j, (p, pp) in enumerate(zip(priors, params)))

  return likelihood_rank


def aligned_mean(samples: np.ndarray, reference: np.ndarray) -> np.ndarray:
  """The posterior mean of samples [N, S, k, H, W, C]: each sample's components reordered to
  match `reference` [N, k, H, W, C] (the chosen sample; no ground truth used), then averaged
  over S. Without the reordering a swap between samples would average two digits."""
  samples = np.asarray(samples, np.float32)
  n, s = samples.shape[:2]
  aligned = np.empty_like(samples)
  for i in range(s):
    # pairwise_psnr[n, a, b] compares sample component a with reference component b.
    perm, _ = metrics.best_permutation(metrics.pairwise_psnr(samples[:, i], reference))
    aligned[:, i] = metrics.apply_permutation(samples[:, i], perm)
  return aligned.mean(axis=1)


def per_sample_psnr(samples: np.ndarray, truth: np.ndarray,
                    data_range: float = 1.0) -> np.ndarray:
  """[N, S]: the permutation-matched PSNR of each of the S samples [N, S, k, H, W, C] of a
  mixture, scored on its own."""
  return np.stack([metrics.separation_psnr(samples[:, i], truth, data_range)["mixture"]
                   for i in range(samples.shape[1])], axis=1)


def sample_psnr_summary(samples: np.ndarray, chosen_components: np.ndarray,
                        truth: np.ndarray, data_range: float = 1.0) -> dict[str, np.ndarray]:
  """Per-mixture PSNR [N] of the chosen sample, the mean single sample (each of the S scored
  on its own, then averaged), the oracle best sample and the aligned posterior mean."""
  per_sample = per_sample_psnr(samples, truth, data_range)
  return {
      "chosen": metrics.separation_psnr(chosen_components, truth, data_range)["mixture"],
      "single_sample": per_sample.mean(axis=1),
      "oracle": per_sample.max(axis=1),
      "posterior_mean": metrics.separation_psnr(aligned_mean(samples, chosen_components), truth,
                                                data_range)["mixture"],
  }


def best_of_s(samples, priors: Sequence[Prior], num_levels: int | None = None,
              level: int | None = None, chunk_size: int = 256):
  """Best of S after the fact: samples [N, S, k, H, W, C] -> (chosen [N, k, H, W, C],
  index [N], scores [N, S]), by the likelihood criterion with the run's priors, under the
  same rules as the in-run choice (`rankable`, `choose`).

  `num_levels`: the run's schedule length (a σ-conditioned prior fits any ladder, so only
  the schedule knows its last level); needed unless the priors were trained for a fixed
  number of levels or `level` is given. `chunk_size`: samples (of k images each) scored at
  a time, all chunks of one shape (one compilation), so N·S may exceed device memory.
  `samples` are in the dataset's space (separations.npz); they are scored in the priors'
  (`Prior.to_prior`) and the chosen ones returned as given.
  """
  samples = np.asarray(samples)
  if samples.ndim != 6:
    raise UserError(f"samples must be [N, S, k, H, W, C], got shape {samples.shape}.")
  missing = [p.name for p in priors if p.log_density_fn is None]
  if missing:
    raise UserError(f"Best of S by likelihood needs a prior log-density; {missing} expose "
                    "none.")
  if len(priors) != samples.shape[2]:
    raise UserError(f"{len(priors)} priors for {samples.shape[2]} components.")
  if level is None:
    num_levels = num_levels or priors[0].num_levels
    if num_levels is None:
      raise UserError(f"Best of S scores at the schedule's last σ, but the {priors[0].name} "
                      "prior fits any ladder: pass the schedule's num_levels.")
    level = num_levels - 1
  rank = jax.jit(make_rank_fn("likelihood", priors, None, num_levels=level + 1))
  shared = all(p is priors[0] for p in priors)
  params = priors[0].params if shared else tuple(p.params for p in priors)
  n, s = samples.shape[:2]
  flat = np.asarray(priors[0].to_prior(samples)).reshape((n * s,) + samples.shape[2:])
  scores = sharding.map_chunks(lambda part: rank(params, part, None), [flat],
                               min(chunk_size, len(flat))).reshape(n, s)
  if not np.all(np.isfinite(scores)):
    logging.warning("%d of %d samples have a non-finite prior log-density; they rank last.",
                    int(np.sum(~np.isfinite(scores))), scores.size)
  index = choose(scores)
  return samples[np.arange(n), index], index, scores
