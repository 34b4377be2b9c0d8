"""Choosing one of S posterior samples per mixture, inside the compiled separation.

`config.select` names the criterion a run ranks its S samples by (`config.sampler.num_samples`):

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

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from basis_jax import likelihood, metrics, mixing as mixing_lib
from basis_jax.errors import ConfigError
from basis_jax.priors.base import Prior
from basis_jax.sampler import RankFn

CRITERIA = ("likelihood", "residual", "none")


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
