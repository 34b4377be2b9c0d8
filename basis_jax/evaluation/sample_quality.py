"""Sample quality of CIFAR-10 separations in a classifier's features, with real-vs-real floors.

The paper scores CIFAR-10 separations by Inception Score and FID (PSNR cannot: natural-image
components are not identifiable). Without the Inception weights, the same three kinds of
score are taken in the features of a `classifier.load()`-able network and named for what
they are, never IS or FID:

- **classifier score**: exp(E_x KL(p(y|x) ‖ p(y))) of the network's logits, 10 splits (the
  Inception Score's formula, `report.inception_score`, with another network);
- **FD (classifier features)**: the Fréchet distance (`report.frechet_distance`) between the
  penultimate features of a set and of the training images;
- **KID (classifier features)**: the unbiased MMD² with the cubic kernel
  k(x, y) = (x·y/d + 1)³, averaged over subsets (Bińkowski et al. 2018).

FD is biased upwards at small N and the classifier score depends on N through its splits,
so every table has a real-vs-real row at the same N: that many test images scored against
the training images, the floor a perfect separation would reach. Separations are then
reported as excess over real: (score − real) ÷ (Average's score − real), 0 as good as real
images, 1 no better than the Average baseline.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any

import numpy as np

from basis_jax.errors import ConfigError, InputFileError, MissingFileError, UserError
from basis_jax.evaluation import classifier, metrics, report

# The feature network trained and committed in this repository (docs/classifier.md: 24 epochs,
# 91.8 % on the exact test images; training/classifier_features is its 12-epoch run, 90.1 %,
# and the smaller label-recovery classifier is classifier_cifar10).
DEFAULT_CLASSIFIER = str(pathlib.Path(__file__).resolve().parents[2] / 'training'
                         / 'classifier_features24' / 'classifier.npz')
SCORES = ('classifier_score', 'fd_classifier_features', 'fd_infinity_classifier_features',
          'kid_classifier_features')
# How each score is named wherever it is shown.
SCORE_NAMES = {'classifier_score': 'classifier score',
               'fd_classifier_features': 'FD (classifier features)',
               'fd_infinity_classifier_features': 'FD∞ (classifier features)',
               'kid_classifier_features': 'KID (classifier features)'}
SPLITS = 10
# FD∞: FD of random subsets of these fractions of a set (mean of the draws; the whole set
# once), extrapolated in 1/n.
FD_INFINITY_FRACTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)
FD_INFINITY_DRAWS = 5
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def _check_features(name: str, features: np.ndarray, minimum: int) -> np.ndarray:
  features = np.asarray(features, np.float64)
  if features.ndim != 2:
    raise ValueError(f'{name} must be [N, D], got shape {features.shape}.')
  if len(features) < minimum:
    raise ValueError(f'{name} has {len(features)} rows; this score needs at least {minimum}.')
  if not np.all(np.isfinite(features)):
    raise ValueError(f'{name} holds {np.sum(~np.isfinite(features))} non-finite values.')
  return features


# ----------------------------------------------------------------------------- the scores


def classifier_score(logits: np.ndarray, splits: int = SPLITS) -> tuple[float, float]:
  """Mean and std over `splits` consecutive parts of exp(E KL(p(y|x) ‖ p(y))), logits [N, C].

  1 when every prediction is the marginal; C when the predictions are confident and spread
  evenly over the C classes.
  """
  logits = _check_features('logits', logits, splits)
  return report.inception_score(logits, splits)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and unbiased covariance of features [N, D] (N ≥ 2), checked."""
  return report.activation_statistics(_check_features('features', features, 2))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """Fréchet distance between Gaussians fitted to two feature sets [N, D] and [M, D]."""
  return report.frechet_distance(*feature_statistics(features_a),
                                 *feature_statistics(features_b))


def frechet_distance_infinity(features: np.ndarray, reference_mu: np.ndarray,
                              reference_sigma: np.ndarray, *,
                              fractions=FD_INFINITY_FRACTIONS, draws: int = FD_INFINITY_DRAWS,
                              seed: int = 0) -> float:
  """FD extrapolated to infinitely many images (Chong & Forsyth 2020, "FID∞").

  FD from N images is biased upwards by about b/N, with b depending on the set, so sets
  scored at one N carry different biases (and the real row its floor). The FD of random
  subsets of n = f·N images (the mean over `draws` subsets; the whole set once) is fitted
  as FD(n) = FD∞ + b/n by least squares; FD∞ is the intercept. It can be slightly negative
  for a set drawn from the reference's own distribution.
  """
  features = _check_features('features', features, 10)
  rng = np.random.default_rng(seed)
  sizes, values = [], []
  for fraction in fractions:
    n = max(2, int(round(fraction * len(features))))
    repeats = 1 if n == len(features) else draws
    fds = []
    for _ in range(repeats):
      part = features if n == len(features) else features[rng.choice(len(features), n,
                                                                        replace=False)]
      fds.append(report.frechet_distance(*feature_statistics(part), reference_mu,
                                         reference_sigma))
    sizes.append(n)
    values.append(np.mean(fds))
  design = np.stack([np.ones(len(sizes)), 1.0 / np.asarray(sizes, np.float64)], 1)
  intercept, _ = np.linalg.lstsq(design, np.asarray(values), rcond=None)[0]
  return float(intercept)


def mmd2_unbiased(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """Unbiased MMD² of [m, D] and [n, D] (m, n ≥ 2) with k(x, y) = (x·y/D + 1)³.

  Within-set sums leave out the diagonal (k(x, x)), which makes the estimate unbiased: its
  expectation is the population MMD², 0 for sets from one distribution, so single values
  can be negative.
  """
  a = _check_features('features_a', features_a, 2)
  b = _check_features('features_b', features_b, 2)
  if a.shape[1] != b.shape[1]:
    raise ValueError(f'Feature sets of different widths: {a.shape} and {b.shape}.')
  dim = a.shape[1]

  def kernel(x, y):
    return (x @ y.T / dim + 1.0) ** 3

  m, n = len(a), len(b)
  k_aa, k_bb = kernel(a, a), kernel(b, b)
  within_a = (k_aa.sum() - np.trace(k_aa)) / (m * (m - 1))
  within_b = (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1))
  return float(within_a + within_b - 2.0 * kernel(a, b).mean())


def kid_unbiased(features_a: np.ndarray, features_b: np.ndarray, *,
                 num_subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
                 seed: int = 0) -> tuple[float, float]:
  """KID: mean and std of `mmd2_unbiased` over subsets of both sets.

  Each of `num_subsets` draws takes min(subset_size, m, n) rows of each set without
  replacement (seeded by `seed`). A set no larger than that is used whole in every draw;
  when both are, there is one estimate and its std is 0.
  """
  a = _check_features('features_a', features_a, 2)
  b = _check_features('features_b', features_b, 2)
  if num_subsets < 1 or subset_size < 2:
    raise ValueError(f'KID needs num_subsets >= 1 and subset_size >= 2, got {num_subsets} '
                     f'and {subset_size}.')
  size = min(subset_size, len(a), len(b))
  if size == len(a) and size == len(b):
    return mmd2_unbiased(a, b), 0.0
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(num_subsets):
    part_a = a if size == len(a) else a[rng.choice(len(a), size, replace=False)]
    part_b = b if size == len(b) else b[rng.choice(len(b), size, replace=False)]
    values.append(mmd2_unbiased(part_a, part_b))
  return float(np.mean(values)), float(np.std(values))


def excess_over_real(score: float, real: float, average: float) -> float:
  """(score − real) ÷ (average − real): 0 as good as real images, 1 as the Average baseline.

  The same for scores where higher is better (the classifier score); NaN when the Average
  scores exactly as real images, so there is no gap to measure against.
  """
  values = np.array([score, real, average], np.float64)
  if not np.all(np.isfinite(values)):
    raise ValueError(f'excess_over_real needs finite scores, got score={score}, real={real}, '
                     f'average={average}.')
  if average == real:
    return float('nan')
  return float((score - real) / (average - real))


# ----------------------------------------------------------------------------- a run


def set_scores(features: np.ndarray, logits: np.ndarray, reference: dict[str, Any], *,
               kid_subsets: int = KID_SUBSETS, seed: int = 0) -> dict[str, Any]:
  """The three scores of one image set against the reference statistics and features."""
  score, score_std = classifier_score(logits)
  mu, sigma = feature_statistics(features)
  kid, kid_std = kid_unbiased(features, reference['features'], num_subsets=kid_subsets,
                              seed=seed)
  return {'n_images': len(features), 'classifier_score': score,
          'classifier_score_std': score_std,
          'fd_classifier_features': report.frechet_distance(mu, sigma, reference['mu'],
                                                            reference['sigma']),
          'fd_infinity_classifier_features': frechet_distance_infinity(
              features, reference['mu'], reference['sigma'], seed=seed),
          'kid_classifier_features': kid, 'kid_classifier_features_std': kid_std,
          'kid_subset_size': min(KID_SUBSET_SIZE, len(features), len(reference['features']))}


def is_cifar10_run(sep: report.Separations,
                   reference_data: dict[str, Any] | None = None) -> bool:
  ref_config = report.reference_data_config(sep, reference_data)
  return (ref_config is not None and ref_config.get('source') == 'cifar10'
          and sep.components.shape[3:] == (32, 32, 3))


def _load_images(data_config: dict[str, Any]) -> np.ndarray:
  from basis_jax.files import data as data_lib  # pylint: disable=import-outside-toplevel
  try:
    return data_lib.load(data_config).images
  except UserError:
    raise
  except (OSError, ValueError) as e:  # e.g. a tfds dataset not prepared on this machine
    raise InputFileError(f"The {data_config.get('source')} {data_config.get('split')} images "
                         f'could not be read: {e}') from e


def reference_features(model, classifier_digest: str, ref_config: dict[str, Any],
                       image_shape: tuple[int, ...],
                       stats_cache_dir: str = '~/.cache/basis_jax/fid_stats',
                       batch_size: int = 500) -> dict[str, Any]:
  """The reference images' feature statistics and features (mu, sigma, features, n),
  computed once per classifier (its SHA-256) and reference set, then read from the cache."""

  def extract(images):
    pooled, logits = classifier.features(model, images, batch_size)
    return {'pool': pooled, 'logits': logits}

  def load_reference():
    images = _load_images(ref_config)
    if images.shape[1:] != tuple(image_shape):
      raise InputFileError(f'The reference images are {images.shape[1:]}, the separations '
                           f'{tuple(image_shape)}.')
    return images

  return report.reference_statistics(
      'classifier_' + report.reference_cache_name(ref_config), load_reference, extract,
      stats_cache_dir, classifier_digest, keep_features=True)


def sample_quality_results(sep: report.Separations, classifier_path: str, *,
                           reference_data: dict[str, Any] | None = None,
                           stats_cache_dir: str = '~/.cache/basis_jax/fid_stats',
                           batch_size: int = 500,
                           kid_subsets: int = KID_SUBSETS) -> dict[str, Any]:
  """The scores of the separations, of the Average baseline and of N real test images.

  N is the number of separated images scored: N_mixtures · k, the first posterior sample of
  each mixture when several are kept, so that the three rows are at the same N (the real
  row at fewer only when the test split holds fewer images; eval.json says how many).
  """
  from basis_jax.files import data_formats  # pylint: disable=import-outside-toplevel
  if not os.path.exists(classifier_path):
    raise MissingFileError(f'Classifier weights {classifier_path} not found.',
                           hint='train one with `python -m experiments.train_classifier`.')
  model, metadata = classifier.load(classifier_path)
  ref_config = report.reference_data_config(sep, reference_data)
  image_shape = sep.components.shape[3:]

  digest = data_formats.file_digest(classifier_path)
  reference = reference_features(model, digest, ref_config, image_shape, stats_cache_dir,
                                 batch_size)
  average = metrics.average_baseline(sep.mixtures, sep.num_components, sep.alphas,
                                     channels=image_shape[-1])
  sets = {'basis': sep.components[:, 0].reshape((-1,) + image_shape),
          'average': average.reshape((-1,) + image_shape)}
  n = len(sets['basis'])
  if n < SPLITS:
    raise InputFileError(f'{n} separated images: the classifier score needs at least '
                         f'{SPLITS} ({SPLITS} splits).')
  test_config = {**ref_config, 'split': 'test', 'first_example': 0, 'num_examples': n}
  sets['real'] = _load_images(test_config)[:n]
  out = {'network': classifier.network_name(metadata.get('test_accuracy')),
         'classifier': os.path.abspath(classifier_path), 'classifier_sha256': digest,
         'reference': f"{ref_config.get('source')} {ref_config.get('split')} "
                      f"({reference['n']} images)",
         'reference_features': reference['path'],
         'real_images': f"the first {len(sets['real'])} {ref_config.get('source')} test images",
         'kid_num_subsets': kid_subsets,
         'scored': ('the first posterior sample of each mixture' if sep.components.shape[1] > 1
                    else 'the kept sample of each mixture')}
  for name, images in sets.items():
    clipped = float(np.mean((images < 0) | (images > 1)))
    pooled, logits = classifier.features(model, np.clip(images, 0.0, 1.0), batch_size)
    out[name] = {**set_scores(pooled, logits, reference, kid_subsets=kid_subsets),
                 'fraction_pixels_clipped': clipped}
  excess = {}
  for key in SCORES:
    value = excess_over_real(out['basis'][key], out['real'][key], out['average'][key])
    excess[key] = None if np.isnan(value) else value
  out['excess_over_real'] = {'basis': excess}
  return out


def classifier_for(sep: report.Separations, classifier_option: str,
                   reference_data: dict[str, Any] | None = None) -> str | None:
  """The classifier weights to score a run with, or None to skip: 'never'; 'auto' (the
  committed DEFAULT_CLASSIFIER, CIFAR-10 runs only, skipped when the file is absent); or a
  path, which must exist and is for CIFAR-10 runs (ConfigError otherwise)."""
  if classifier_option == 'never':
    return None
  cifar10 = is_cifar10_run(sep, reference_data)
  if classifier_option == 'auto':
    if not cifar10:
      return None
    if not os.path.exists(DEFAULT_CLASSIFIER):
      logging.warning('Skipping the classifier scores: %s not found.', DEFAULT_CLASSIFIER)
      return None
    return DEFAULT_CLASSIFIER
  if not cifar10:
    raise ConfigError(f'classifier={classifier_option!r}: the classifier scores are for '
                      'CIFAR-10 runs (32x32x3, data source cifar10).',
                      hint="leave classifier at 'auto' for other runs.")
  return classifier_option


# ----------------------------------------------------------------------------- eval.md


def _fmt(value: float | None) -> str:
  return '–' if value is None else f'{value:.3f}'


def markdown_lines(block: dict[str, Any], colorization: bool) -> list[str]:
  """eval.md's table of the `sample_quality` block of eval.json."""
  if 'error' in block:
    return ["Classifier scores not computed: eval.json's sample_quality.error says why.", '']
  baseline, ours = ('gray image', 'colorized') if colorization else ('Average', 'BASIS')
  lines = [f"Sample quality in the features of the {block['network']}, against "
           f"{block['reference']}: the formulas of IS, FID and KID applied to this network "
           "instead of Inception, so not IS or FID and not comparable with the paper's "
           f"numbers (docs/evaluation.md). Scored: {block['scored']}; KID averaged over "
           f"{block['kid_num_subsets']} subsets.", '',
           f"| images | N | {' | '.join(SCORE_NAMES.values())} |",
           '|---|---|' + '---|' * len(SCORES)]
  for label, key in (('real (test vs train)', 'real'), (baseline, 'average'), (ours, 'basis')):
    row = block[key]
    lines.append(f"| {label} | {row['n_images']} | {row['classifier_score']:.3f} "
                 f"± {row['classifier_score_std']:.3f} | {row['fd_classifier_features']:.4g} | "
                 f"{row['fd_infinity_classifier_features']:.4g} | "
                 f"{row['kid_classifier_features']:.4g} ± "
                 f"{row['kid_classifier_features_std']:.2g} |")
  if block['real']['n_images'] != block['basis']['n_images']:
    lines += ['', f"The test split holds only {block['real']['n_images']} images: the real row "
              "is at that N, not the separations'."]
  excess = block['excess_over_real']['basis']
  lines += ['', f"{ours}'s excess over real, (score − real) ÷ ({baseline}'s score − real): 0 "
            f"is as good as real test images, 1 no better than the {baseline}.", '',
            f"| {' | '.join(SCORE_NAMES.values())} |", '|' + '---|' * len(SCORES),
            '| ' + ' | '.join(_fmt(excess[key]) for key in SCORES) + ' |', '']
  return lines
