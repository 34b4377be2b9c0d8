"""The best-of-S schemes of studies/best_of_s_frontier.py and how one is scored from a run
of independent chains (no flags, so tests and other tools can import it)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

SAMPLES = (1, 2, 4, 8)
PRUNE_AFTER = (1, 2, 3, 4)
SURVIVORS = (1, 2)


@dataclasses.dataclass(frozen=True)
class Scheme:
  steps: int  # T
  samples: int  # S chains started
  prune_after: int = 0  # Levels before pruning (0: none)
  survivors: int = 0  # Chains finished after pruning

  @property
  def name(self) -> str:
    text = f"T={self.steps} S={self.samples}"
    return text + (f" prune@{self.prune_after}→{self.survivors}" if self.prune_after else "")

  def cost(self, num_levels: int, num_sigmas: int) -> float:
    """Network evaluations per mixture (of both components together): S·L·T for the chains,
    K per sample the bound scores, one more per chain for Tweedie's denoising."""
    if self.prune_after:
      finished = self.survivors
      evals = (self.samples * self.prune_after * self.steps
               + finished * (num_levels - self.prune_after) * self.steps
               + self.samples * (1 + num_sigmas))
    else:
      finished = self.samples
      evals = self.samples * num_levels * self.steps
    if finished > 1:
      evals += finished * num_sigmas
    return evals

  def overrides(self) -> dict:
    return {"schedule.steps_per_level": self.steps, "sampler.num_samples": self.samples,
            "select": "likelihood" if self.samples > 1 else "none",
            "sampler.prune_after": self.prune_after,
            "sampler.survivors": max(self.survivors, 1)}


def schemes(steps: int, max_samples: int, num_levels: int) -> list[Scheme]:
  out = [Scheme(steps, s) for s in SAMPLES if s <= max_samples]
  out += [Scheme(steps, s, p, r) for s, p, r in itertools.product(SAMPLES, PRUNE_AFTER, SURVIVORS)
          if 2 <= s <= max_samples and r < s and p < num_levels]
  return out


def evaluate_scheme(scheme: Scheme, per_sample, final, early):
  """Per-mixture PSNR [N] of the chosen sample, the single sample and the oracle."""
  n = per_sample.shape[0]
  chains = np.arange(scheme.samples)
  if scheme.prune_after:
    order = np.argsort(-early[scheme.prune_after][:, chains], axis=1, kind="stable")
    kept = np.sort(order[:, :scheme.survivors], axis=1)
  else:
    kept = np.broadcast_to(chains, (n, scheme.samples))
  rows = np.arange(n)[:, None]
  choice = kept[np.arange(n), np.argmax(final[rows, kept], axis=1)]
  return {"chosen": per_sample[np.arange(n), choice],
          "single_sample": per_sample[:, chains].mean(axis=1),
          "oracle": per_sample[rows, kept].max(axis=1)}
