"""The paper's Average baseline on the real MNIST test set (Table 2: 14.9 / 14.8 dB).

Checks data loading, mixture construction and the PSNR protocol together. Runs when the
offline data exists: $BASIS_SHARED_DATA, default <repo>/../shared/data.
"""

import os

import ml_collections
import numpy as np
import pytest

from basis_jax import metrics, mixtures

SHARED_DATA = os.environ.get(
    'BASIS_SHARED_DATA',
    os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data'))
MNIST = os.path.join(SHARED_DATA, 'mnist')


@pytest.mark.skipif(not os.path.exists(os.path.join(MNIST, 't10k-images-idx3-ubyte.gz')),
                    reason=f'no MNIST under {MNIST} (set BASIS_SHARED_DATA)')
@pytest.mark.parametrize('kind,paper', [('agnostic', 14.9), ('class_split', 14.8)])
def test_average_baseline_matches_paper(kind, paper):
  cfg = ml_collections.ConfigDict({
      'data': {'source': 'mnist', 'path': MNIST, 'split': 'test'},  # checksums verified
      'mixture': {'kind': kind, 'num_mixtures': 6000, 'seed': 0}})
  ms = mixtures.from_config(cfg, (28, 28, 1))
  estimates = metrics.average_baseline(ms.mixtures, ms.num_components, ms.alphas)
  summary = metrics.summarize(metrics.separation_psnr(estimates, ms.ground_truth)['mixture'])
  assert summary['n'] == 6000
  assert abs(summary['mean'] - paper) <= 0.3, summary
  assert np.isfinite(summary['std'])
