"""Permutation PSNR, the Average baseline, aggregation, SSIM and the histogram."""

import itertools

import numpy as np
import pytest
from PIL import Image

from basis_jax.evaluation import metrics


def test_psnr_known_value():
  x = np.zeros((2, 4, 4, 1))
  np.testing.assert_allclose(metrics.psnr(x + 0.1, x), [20.0, 20.0])
  np.testing.assert_allclose(metrics.psnr(x + 0.2, x, data_range=2.0), [20.0, 20.0])
  with pytest.raises(ValueError, match='equal shape'):
    metrics.psnr(x, np.zeros((2, 4, 5, 1)))


def _loop_reference(estimates, truth):
  """The published protocol written as plain loops: best summed PSNR / k per mixture."""
  out = []
  k = estimates.shape[1]
  for est, gt in zip(estimates, truth):
    best = max(sum(-10 * np.log10(np.mean((est[p[j]] - gt[j]) ** 2)) for j in range(k))
               for p in itertools.permutations(range(k)))
    out.append(best / k)
  return np.array(out)


@pytest.mark.parametrize('k', [2, 3])
def test_permutation_psnr_matches_loops(k):
  rng = np.random.default_rng(k)
  truth = rng.random((20, k, 6, 6, 3))
  estimates = truth[:, rng.permutation(k)] + 0.05 * rng.normal(size=truth.shape)
  result = metrics.separation_psnr(estimates, truth)
  np.testing.assert_allclose(result['mixture'], _loop_reference(estimates, truth))
  # The returned permutation reorders the estimates onto the ground truth.
  reordered = metrics.apply_permutation(estimates, result['permutation'])
  np.testing.assert_allclose(metrics.psnr(reordered, truth), result['component'])


def test_swapped_components_are_matched():
  rng = np.random.default_rng(0)
  truth = rng.random((3, 2, 5, 5, 1))
  result = metrics.separation_psnr(truth[:, ::-1] + 0.01, truth)
  np.testing.assert_array_equal(result['permutation'], [[1, 0]] * 3)
  np.testing.assert_allclose(result['component'], 40.0)


def test_average_baseline():
  m = np.ones((4, 3, 3, 1), np.float32)
  est = metrics.average_baseline(m, 2)
  assert est.shape == (4, 2, 3, 3, 1)
  np.testing.assert_allclose(est, 0.5)
  np.testing.assert_allclose(metrics.average_baseline(m, 2, alphas=(0.5, 0.5)), 1.0)


def test_summarize():
  s = metrics.summarize([1.0, 2.0, 3.0, 4.0])
  assert s['mean'] == 2.5 and s['n'] == 4
  np.testing.assert_allclose(s['std'], np.std([1, 2, 3, 4], ddof=1))
  np.testing.assert_allclose(s['ci95'], 1.96 * s['std'] / 2, rtol=1e-3)
  with pytest.raises(ValueError):
    metrics.summarize([])


def _ssim_loops(x, y, size=11, sigma=1.5):
  g = np.exp(-0.5 * ((np.arange(size) - (size - 1) / 2) / sigma) ** 2)
  w = np.outer(g, g) / np.outer(g, g).sum()
  c1, c2 = 0.01 ** 2, 0.03 ** 2
  vals = []
  for c in range(x.shape[-1]):
    for i in range(x.shape[0] - size + 1):
      for j in range(x.shape[1] - size + 1):
        a, b = x[i:i + size, j:j + size, c], y[i:i + size, j:j + size, c]
        ma, mb = (w * a).sum(), (w * b).sum()
        va, vb = (w * a * a).sum() - ma ** 2, (w * b * b).sum() - mb ** 2
        cov = (w * a * b).sum() - ma * mb
        vals.append((2 * ma * mb + c1) * (2 * cov + c2) /
                    ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
  return np.mean(vals)


def test_ssim():
  rng = np.random.default_rng(0)
  x = rng.random((2, 14, 13, 2))
  y = np.clip(x + 0.1 * rng.normal(size=x.shape), 0, 1)
  np.testing.assert_allclose(metrics.ssim(x, x), 1.0)
  got = metrics.ssim(x, y)
  np.testing.assert_allclose(got, [_ssim_loops(x[i], y[i]) for i in range(2)], rtol=1e-10)
  truth = x[:, None].repeat(2, 1)
  perm = np.array([[1, 0], [0, 1]])
  assert metrics.matched_ssim(truth, truth, perm).shape == (2, 2)


def test_histogram_png(tmp_path):
  values = np.random.default_rng(0).normal(20, 3, 500)
  path = str(tmp_path / 'h.png')
  counts = metrics.write_histogram_png(values, path, bins=25)
  assert counts.sum() == 500 and len(counts) == 25
  with Image.open(path) as img:
    assert img.size == (640, 400)


def test_histogram_y_ticks_are_whole_counts_at_whole_positions():
  # A peak of 6 once read "0 2 3 4 6" at 0, 1.5, 3, 4.5, 6.
  figure, counts = metrics.histogram_figure([1.0] * 6 + [2.0, 3.0], bins=4)
  assert counts.max() == 6
  figure.canvas.draw()
  ticks = figure.axes[0].get_yticks()
  assert np.all(ticks == np.round(ticks))
  labels = [t.get_text().replace('\u2212', '-') for t in figure.axes[0].get_yticklabels()]
  assert [float(t) for t in labels] == list(ticks)
