"""Separation metrics as the paper reports them: permutation-matched PSNR, SSIM, baselines.

PSNR follows the published BASIS evaluation: per component `-10 log10(mean((x_hat - x)^2))`
with peak 1 for images in [0, 1]; the separated components of a mixture are matched to
the ground truth by the permutation that maximises the summed PSNR, and the mixture's
score is that sum divided by k. Everything here is vectorised numpy: 6,000 MNIST pairs
take well under a second.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np

from basis_jax.files import atomic


def psnr(estimate: np.ndarray, target: np.ndarray, data_range: float = 1.0) -> np.ndarray:
  """PSNR in dB over the last three axes (H, W, C); leading axes broadcast."""
  estimate = np.asarray(estimate, np.float64)
  target = np.asarray(target, np.float64)
  if estimate.ndim < 3 or estimate.shape[-3:] != target.shape[-3:]:
    raise ValueError('PSNR needs images of equal shape [..., H, W, C], got '
                     f'{estimate.shape} and {target.shape}.')
  mse = np.mean((estimate - target) ** 2, axis=(-3, -2, -1))
  with np.errstate(divide='ignore'):
    return 10.0 * np.log10(data_range ** 2 / mse)


def _check_components(estimates: np.ndarray, ground_truth: np.ndarray) -> None:
  if estimates.ndim != 5 or estimates.shape != ground_truth.shape:
    raise ValueError('Expected estimates and ground truth of equal shape [N, k, H, W, C], '
                     f'got {estimates.shape} and {ground_truth.shape}.')


def pairwise_psnr(estimates: np.ndarray, ground_truth: np.ndarray,
                  data_range: float = 1.0) -> np.ndarray:
  """[N, k, k] PSNR of estimate i against ground truth j, per mixture."""
  _check_components(estimates, ground_truth)
  return psnr(estimates[:, :, None], ground_truth[:, None, :], data_range)


def best_permutation(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """For [N, k, k] scores (estimate i vs truth j), the assignment with the largest sum.

  Returns (perm [N, k], matched [N, k]) where estimate perm[n, j] is matched to truth j
  and matched[n, j] is its score. Exhaustive over the k! permutations, which is exact and
  cheap for the k the paper uses (k <= 6 means at most 720 candidates).
  """
  n, k, _ = scores.shape
  perms = np.array(list(itertools.permutations(range(k))), dtype=np.int64)  # [P, k]
  truth = np.arange(k)
  candidate = scores[:, perms, truth]  # [N, P, k]: score of estimate perms[p, j] vs j
  # First maximum wins ties, so the identity is kept when it is as good as any other.
  best = np.argmax(candidate.sum(-1), axis=1)
  return perms[best], candidate[np.arange(n), best]


def separation_psnr(estimates: np.ndarray, ground_truth: np.ndarray,
                    data_range: float = 1.0) -> dict[str, np.ndarray]:
  """Permutation-matched PSNR of separated components [N, k, H, W, C].

  Returns `component` [N, k] (PSNR of each ground-truth component against its matched
  estimate), `mixture` [N] (their mean: the paper's per-mixture score) and
  `permutation` [N, k].
  """
  perm, matched = best_permutation(pairwise_psnr(estimates, ground_truth, data_range))
  return {'component': matched, 'mixture': matched.mean(-1), 'permutation': perm}


def average_baseline(mixtures: np.ndarray, num_components: int,
                     alphas: Sequence[float] | None = None,
                     channels: int | None = None) -> np.ndarray:
  """The paper's "Average" separation: every component estimated as m / sum(alphas).

  For the plain sum (alphas all 1) that is m/k, as in the paper; for the Glow average
  (alphas 1/k) it is m itself, so either way the estimates add back up to the mixture.
  For colorization (one-channel mixtures, `channels`=3 components) it is the grayscale
  input repeated over RGB (the paper's "grayscale input" row). Returns [N, k, H, W, C].
  """
  if channels is not None and mixtures.shape[-1] == 1 and channels > 1:
    return np.repeat(np.asarray(mixtures, np.float32), channels, axis=-1)[:, None]
  total = float(num_components if alphas is None else np.sum(alphas))
  estimate = np.asarray(mixtures, np.float32) / total
  return np.repeat(estimate[:, None], num_components, axis=1)


def apply_permutation(estimates: np.ndarray, permutation: np.ndarray) -> np.ndarray:
  """Reorders [N, k, ...] estimates so that estimate j matches ground-truth component j."""
  return np.take_along_axis(
      estimates, permutation.reshape(permutation.shape + (1,) * (estimates.ndim - 2)), 1)


def summarize(values: np.ndarray) -> dict[str, float]:
  """Mean, sample standard deviation and 95% normal-approximation interval half-width."""
  values = np.asarray(values, np.float64).ravel()
  if values.size == 0:
    raise ValueError('Cannot summarise an empty set of values.')
  std = float(values.std(ddof=1)) if values.size > 1 else 0.0
  return {'mean': float(values.mean()), 'std': std,
          'ci95': 1.959963984540054 * std / math.sqrt(values.size), 'n': int(values.size)}


# ----------------------------------------------------------------------------- SSIM


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2
  w = np.exp(-0.5 * (x / sigma) ** 2)
  return w / w.sum()


def _filter_valid(images: np.ndarray, window: np.ndarray) -> np.ndarray:
  """Separable 'valid' filtering over axes -3, -2 of [..., H, W, C]."""
  size = len(window)
  rows = np.lib.stride_tricks.sliding_window_view(images, size, axis=-3)
  out = np.tensordot(rows, window, axes=([-1], [0]))
  cols = np.lib.stride_tricks.sliding_window_view(out, size, axis=-2)
  return np.tensordot(cols, window, axes=([-1], [0]))


def ssim(estimate: np.ndarray, target: np.ndarray, data_range: float = 1.0,
         window_size: int = 11, sigma: float = 1.5) -> np.ndarray:
  """Structural similarity (Wang et al. 2004) over the last three axes (H, W, C).

  The usual constants: an 11x11 Gaussian window with sigma 1.5 applied without padding,
  K1 = 0.01, K2 = 0.03, averaged over positions and channels (as `tf.image.ssim`).
  """
  x = np.asarray(estimate, np.float64)
  y = np.asarray(target, np.float64)
  if x.shape != y.shape:
    raise ValueError(f'SSIM needs equal shapes, got {x.shape} and {y.shape}.')
  if min(x.shape[-3:-1]) < window_size:
    raise ValueError(f'SSIM window {window_size} exceeds image size {x.shape[-3:-1]}.')
  w = _gaussian_window(window_size, sigma)
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  mu_x, mu_y = _filter_valid(x, w), _filter_valid(y, w)
  var_x = _filter_valid(x * x, w) - mu_x ** 2
  var_y = _filter_valid(y * y, w) - mu_y ** 2
  cov = _filter_valid(x * y, w) - mu_x * mu_y
  ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
      (mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
  return ssim_map.mean(axis=(-3, -2, -1))


def matched_ssim(estimates: np.ndarray, ground_truth: np.ndarray,
                 permutation: np.ndarray, data_range: float = 1.0) -> np.ndarray:
  """[N, k] SSIM of each ground-truth component against its PSNR-matched estimate."""
  _check_components(estimates, ground_truth)
  return ssim(apply_permutation(estimates, permutation), ground_truth, data_range)


# ----------------------------------------------------------------------------- histogram


def histogram_figure(values: np.ndarray, *, bins: int = 40,
                     value_range: tuple[float, float] | None = None,
                     title: str = 'PSNR of separated components', xlabel: str = 'PSNR (dB)'):
  """(matplotlib Figure, bin counts) of a histogram as the paper's Figure 6."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use('Agg')  # Files only: no display on servers and in tests.
  from matplotlib import pyplot as plt, ticker  # pylint: disable=import-outside-toplevel
  values = np.asarray(values, np.float64).ravel()
  values = values[np.isfinite(values)]
  if value_range is None:
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    lo, hi = math.floor(lo), math.ceil(hi) if hi > lo else math.floor(lo) + 1
    value_range = (lo, hi)
  figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=100)
  counts, _, _ = axes.hist(values, bins=bins, range=value_range, color='#466eb4')
  axes.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # Counts are whole numbers.
  axes.set_xlabel(xlabel)
  axes.set_ylabel('count')
  axes.set_title(f'{title} (n={values.size})')
  figure.tight_layout()
  return figure, counts.astype(np.int64)


def write_histogram_png(values: np.ndarray, path: str, *, bins: int = 40,
                        value_range: tuple[float, float] | None = None,
                        title: str = 'PSNR of separated components',
                        xlabel: str = 'PSNR (dB)') -> np.ndarray:
  """Writes `histogram_figure` as a PNG; returns the bin counts."""
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  figure, counts = histogram_figure(values, bins=bins, value_range=value_range, title=title,
                                    xlabel=xlabel)
  with atomic.atomic_open(path, 'wb') as f:
    figure.savefig(f, format='png')
  plt.close(figure)
  return counts
