"""The paper's Average baseline on the real MNIST test set (Table 2: 14.9 / 14.8 dB).

Checks data loading, mixture construction and the PSNR protocol together. Runs when the
offline data exists: $BASIS_SHARED_DATA, default <repo>/../shared/data (see conftest.py).
"""

import ml_collections
import numpy as np
import pytest

from basis_jax import metrics, mixtures


@pytest.mark.parametrize('kind,paper', [('agnostic', 14.9), ('class_split', 14.8)])
def test_average_baseline_matches_paper(shared_data, kind, paper):
  mnist = shared_data / 'mnist'
  if not (mnist / 't10k-images-idx3-ubyte.gz').exists():
    pytest.skip(f'no MNIST test set under {mnist}')
  cfg = ml_collections.ConfigDict({
      'data': {'source': 'mnist', 'path': str(mnist), 'split': 'test'},  # checksums verified
      'mixture': {'kind': kind, 'num_mixtures': 6000, 'seed': 0}})
  ms = mixtures.from_config(cfg, (28, 28, 1))
  estimates = metrics.average_baseline(ms.mixtures, ms.num_components, ms.alphas)
  summary = metrics.summarize(metrics.separation_psnr(estimates, ms.ground_truth)['mixture'])
  assert summary['n'] == 6000
  assert abs(summary['mean'] - paper) <= 0.3, summary  # measured: 14.89 and 14.78
  assert np.isfinite(summary['std'])
