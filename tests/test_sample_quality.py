"""Classifier score, FD and KID in a classifier's features: known cases and a CIFAR-10 run."""

import itertools
import json

import numpy as np
import pytest

from basis_jax.errors import ConfigError
from basis_jax.evaluation import classifier, report, sample_quality


def _gaussian_set(n, mean, covariance, seed):
  """n points whose sample mean and unbiased covariance are exactly `mean`, `covariance`."""
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(n, len(mean)))
  z -= z.mean(0)
  z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # identity covariance
  return mean + z @ np.linalg.cholesky(covariance).T


def test_fd_of_identical_sets_is_zero():
  features = np.random.default_rng(0).normal(size=(500, 16)) * 3 + 1
  trace = np.trace(np.cov(features, rowvar=False))
  # Round-off only: the eigenvalues cancel to ~1e-13 of the trace (bound 1e-9).
  assert abs(sample_quality.frechet_distance(features, features)) <= 1e-9 * trace


def test_fd_of_gaussian_sets_is_the_closed_form():
  a_var, b_var = np.array([1.0, 4.0, 0.25, 9.0]), np.array([2.0, 1.0, 1.0, 16.0])
  mu_a, mu_b = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, 0.0])
  a = _gaussian_set(300, mu_a, np.diag(a_var), seed=1)
  b = _gaussian_set(400, mu_b, np.diag(b_var), seed=2)
  # Diagonal covariances commute: Tr(Σa + Σb − 2(ΣaΣb)^½) = Σ_i (√a_i − √b_i)².
  closed = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(a_var) - np.sqrt(b_var)) ** 2)
  assert sample_quality.frechet_distance(a, b) == pytest.approx(closed, rel=1e-9)
  # A shifted copy: equal covariances, so FD is the squared shift alone.
  shift = np.array([0.3, -1.0, 2.0, 0.0])
  assert sample_quality.frechet_distance(a, a + shift) == pytest.approx(shift @ shift, rel=1e-9)


def test_fd_infinity_removes_the_small_n_bias():
  # Samples of N(μ, I) in 32 dimensions against the exact statistics of N(0, I): the true
  # FD is ‖μ‖². FD from N = 400 samples is biased upwards by about 0.8 here; FD∞ is unbiased
  # to within a fifth of that, on average over sets (one set's mean stays a random draw).
  dim, n = 32, 400
  for shift in (0.0, 0.25):
    mu = np.full(dim, shift)
    true = float(mu @ mu)
    bias_n, bias_inf = [], []
    for seed in range(8):
      features = np.random.default_rng(seed).normal(size=(n, dim)) + mu
      stats = sample_quality.feature_statistics(features)
      bias_n.append(report.frechet_distance(*stats, np.zeros(dim), np.eye(dim)) - true)
      bias_inf.append(sample_quality.frechet_distance_infinity(
          features, np.zeros(dim), np.eye(dim), seed=seed) - true)
    assert np.mean(bias_n) > 0.5, (shift, bias_n)
    assert abs(np.mean(bias_inf)) < 0.2 * np.mean(bias_n), (shift, bias_n, bias_inf)


def _cubic(x, y):
  return (x @ y.T / x.shape[1] + 1.0) ** 3


def _exact_mmd2(support, p, q):
  kernel = _cubic(support, support)
  return p @ kernel @ p + q @ kernel @ q - 2 * p @ kernel @ q


def test_mmd2_is_unbiased_exactly_by_enumeration():
  """Its expectation over every possible draw (m = 2, n = 3 from 3 points) is the
  population MMD²; the biased V-statistic (diagonal kept) would be off by ~10 %."""
  support = np.array([[0.0, 1.0], [2.0, -1.0], [1.5, 3.0]])
  p, q = np.array([0.5, 0.3, 0.2]), np.array([0.1, 0.3, 0.6])
  expected = 0.0
  for draw_a in itertools.product(range(3), repeat=2):
    for draw_b in itertools.product(range(3), repeat=3):
      weight = np.prod(p[list(draw_a)]) * np.prod(q[list(draw_b)])
      expected += weight * sample_quality.mmd2_unbiased(support[list(draw_a)],
                                                        support[list(draw_b)])
  assert expected == pytest.approx(_exact_mmd2(support, p, q), rel=1e-10)


def test_kid_of_one_distribution_averages_zero_and_can_be_negative():
  rng = np.random.default_rng(3)
  values = np.array([sample_quality.mmd2_unbiased(rng.normal(size=(20, 5)),
                                                  rng.normal(size=(20, 5)))
                     for _ in range(400)])
  assert abs(values.mean()) <= 4 * values.std() / np.sqrt(len(values))
  assert (values < 0).mean() > 0.2


def test_kid_of_a_shifted_set_matches_the_exact_mmd2():
  rng = np.random.default_rng(4)
  points = rng.normal(size=(6, 3))
  support = np.concatenate([points, points + 0.8])  # q: p's points, shifted
  p = np.concatenate([np.full(6, 1 / 6), np.zeros(6)])
  q = np.concatenate([np.zeros(6), np.full(6, 1 / 6)])
  exact = _exact_mmd2(support, p, q)
  values = np.array([sample_quality.mmd2_unbiased(support[rng.choice(12, 30, p=p)],
                                                  support[rng.choice(12, 30, p=q)])
                     for _ in range(400)])
  assert exact > 0.1
  assert abs(values.mean() - exact) <= 4 * values.std() / np.sqrt(len(values))


def test_kid_subsets():
  rng = np.random.default_rng(5)
  a, b = rng.normal(size=(50, 4)), rng.normal(size=(300, 4)) + 0.5
  # Both sets within one subset: one estimate of the whole sets, std 0.
  assert sample_quality.kid_unbiased(a, b[:50]) == (sample_quality.mmd2_unbiased(a, b[:50]), 0.0)
  mean, std = sample_quality.kid_unbiased(a, b, num_subsets=20, subset_size=40, seed=1)
  assert std > 0 and (mean, std) == sample_quality.kid_unbiased(a, b, num_subsets=20,
                                                                 subset_size=40, seed=1)
  assert mean == pytest.approx(sample_quality.mmd2_unbiased(a, b), abs=4 * std)


def test_classifier_score_known_cases():
  assert sample_quality.classifier_score(np.zeros((50, 10)))[0] == pytest.approx(1.0)
  # Confident and even over the 10 classes within every split: the number of classes.
  confident = np.tile(np.eye(10) * 50, (10, 1))
  assert sample_quality.classifier_score(confident)[0] == pytest.approx(10.0, rel=1e-6)


def test_excess_over_real():
  assert sample_quality.excess_over_real(3.0, 1.0, 5.0) == 0.5
  # Higher is better (classifier score): the same reading, 0 real, 1 the Average.
  assert sample_quality.excess_over_real(8.0, 10.0, 2.0) == 0.25
  assert np.isnan(sample_quality.excess_over_real(2.0, 1.0, 1.0))
  with pytest.raises(ValueError, match='finite'):
    sample_quality.excess_over_real(float('nan'), 1.0, 2.0)


def test_bad_inputs_are_refused_by_name():
  good = np.zeros((20, 4))
  with pytest.raises(ValueError, match=r'must be \[N, D\]'):
    sample_quality.frechet_distance(np.zeros(20), good)
  with pytest.raises(ValueError, match='non-finite'):
    sample_quality.mmd2_unbiased(np.full((20, 4), np.nan), good)
  with pytest.raises(ValueError, match='at least 2'):
    sample_quality.kid_unbiased(np.zeros((1, 4)), good)
  with pytest.raises(ValueError, match='different widths'):
    sample_quality.mmd2_unbiased(good, np.zeros((20, 5)))
  with pytest.raises(ValueError, match='at least 10'):
    sample_quality.classifier_score(np.zeros((5, 10)))


TINY = classifier.ClassifierConfig(stem=4, widths=(4, 8), num_classes=10)


def test_features_are_what_the_head_reads():
  model = classifier.create(TINY)
  images = np.random.default_rng(6).random((7, 8, 8, 3)).astype(np.float32)
  pooled, logits = classifier.features(model, images, batch_size=3)
  assert pooled.shape == (7, 8) and logits.shape == (7, 10)
  np.testing.assert_allclose(logits, np.asarray(model(images)), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(classifier.predict(model, images), logits.argmax(-1))


def _cifar_run(workdir, cifar_file, n=12):
  """n separated pairs of the first 2n exact test images: the truth, swapped, with noise."""
  with np.load(cifar_file) as f:
    test = f['x_test_first1000'][:2 * n].astype(np.float32) / 255
  truth = test.reshape(n, 2, 32, 32, 3)
  noise = 0.05 * np.random.default_rng(7).normal(size=truth.shape)
  np.savez(workdir / 'separations.npz', mixtures=truth.sum(1),
           components=np.clip(truth[:, ::-1] + noise, 0, 1).astype(np.float32),
           ground_truth=truth, indices=np.arange(2 * n).reshape(n, 2))
  (workdir / 'config.json').write_text(json.dumps({
      'data': {'source': 'cifar10', 'path': str(cifar_file), 'split': 'test'},
      'mixing': {'alphas': [1.0, 1.0]}}))


def test_a_cifar10_run_gets_the_classifier_scores_with_the_real_row(tmp_path, shared_data):
  run = tmp_path / 'run'
  run.mkdir()
  _cifar_run(run, shared_data / 'cifar10' / 'cifar10_exact_subset.npz')
  weights = str(tmp_path / 'classifier.npz')
  classifier.save(weights, classifier.create(TINY), {'test_accuracy': 0.123})
  results = report.evaluate(str(run), inception='never', classifier=weights,
                            stats_cache_dir=str(tmp_path / 'cache'))
  block = json.loads((run / 'eval.json').read_text())['sample_quality']
  assert block['network'] == 'project classifier, test acc 12.3 %'
  assert block['reference'] == 'cifar10 train (4000 images)'
  for row in ('real', 'average', 'basis'):
    assert block[row]['n_images'] == 24  # 12 pairs; the real row at the same N
    assert all(np.isfinite(block[row][key]) for key in sample_quality.SCORES)
    assert {'classifier_score_std', 'kid_classifier_features_std'} <= set(block[row])
  assert set(block['excess_over_real']['basis']) == set(sample_quality.SCORES)
  assert block['real_images'] == 'the first 24 cifar10 test images'
  assert results['sample_quality']['basis'] == block['basis']
  table = (run / 'eval.md').read_text()
  assert '| real (test vs train) | 24 |' in table and '| Average | 24 |' in table
  assert ('| images | N | classifier score | FD (classifier features) | FD∞ (classifier '
          'features) | KID (classifier features) |') in table
  assert 'project classifier, test acc 12.3 %' in table
  # The training images' features are cached: a second evaluation reads them back.
  again = report.evaluate(str(run), inception='never', classifier=weights,
                          stats_cache_dir=str(tmp_path / 'cache'))
  assert again['sample_quality']['reference_features'] == block['reference_features']
  assert again['sample_quality']['basis'] == pytest.approx(block['basis'])


def test_other_runs_get_no_classifier_scores(tmp_path):
  truth = np.random.default_rng(8).random((12, 2, 16, 16, 1)).astype(np.float32)
  np.savez(tmp_path / 'separations.npz', mixtures=truth.sum(1), components=truth * 0.9,
           ground_truth=truth)
  (tmp_path / 'config.json').write_text(json.dumps({'data': {'source': 'mnist'}}))
  assert 'sample_quality' not in report.evaluate(str(tmp_path), inception='never')
  with pytest.raises(ConfigError, match='for CIFAR-10 runs'):
    report.evaluate(str(tmp_path), inception='never', classifier='some/classifier.npz')


def test_colorization_table_says_gray_image_and_colorized():
  row = {'n_images': 10, 'classifier_score': 2.0, 'classifier_score_std': 0.1,
         'fd_classifier_features': 3.0, 'fd_infinity_classifier_features': 1.0,
         'kid_classifier_features': 0.01,
         'kid_classifier_features_std': 0.001}
  block = {'network': 'project classifier, test acc 80.5 %', 'reference': 'cifar10 train',
           'scored': 'the kept sample of each mixture', 'kid_num_subsets': 100,
           'real': row, 'average': row, 'basis': {**row, 'n_images': 20},
           'excess_over_real': {'basis': {'classifier_score': 0.5,
                                          'fd_classifier_features': None,
                                          'fd_infinity_classifier_features': 0.125,
                                          'kid_classifier_features': 0.25}}}
  text = '\n'.join(sample_quality.markdown_lines(block, colorization=True))
  assert '| gray image | 10 |' in text and '| colorized | 20 |' in text
  assert '| 0.500 | – | 0.125 | 0.250 |' in text
  assert 'the real row is at that N' in text
