"""The paper's evaluation of a separation run: PSNR tables, IS / FID, histogram.

`evaluate(workdir, ...)` reads `workdir/separations.npz` (written by
experiments/separate.py), scores the separations and the "Average" baseline on the same
mixtures, and writes `eval.json`, `eval.md` and `psnr_histogram.png` beside it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Callable

import numpy as np

from basis_jax.files import atomic

from basis_jax.evaluation import metrics, scores
from basis_jax.errors import ConfigError, InputFileError, MissingFileError

SEPARATIONS_FILE = 'separations.npz'


@dataclasses.dataclass(frozen=True)
class Separations:
  """What a separation run produced, with components as [N, S, k, H, W, C]."""
  mixtures: np.ndarray
  components: np.ndarray
  ground_truth: np.ndarray | None = None
  indices: np.ndarray | None = None
  alphas: tuple[float, ...] | None = None
  config: dict[str, Any] | None = None
  # With a selection (config.select): every sample [N, S, k, H, W, C] beside the chosen one.
  samples: np.ndarray | None = None

  @property
  def num_components(self) -> int:
    return self.components.shape[2]


def _nested_get(tree: Any, *keys: str) -> Any:
  for key in keys:
    if not isinstance(tree, dict) or tree.get(key) is None:
      return None
    tree = tree[key]
  return tree


def load_separations(workdir: str) -> Separations:
  """Reads `workdir/separations.npz` (and `config.json` when present), checking shapes.

  `components` may be [N, k, H, W, C] or, with S posterior samples, [N, S, k, H, W, C];
  the result always has the sample axis. A run that chose one of S samples per mixture
  (config.select) also has `samples` [N, S, k, H, W, C].
  """
  path = os.path.join(workdir, SEPARATIONS_FILE)
  if not os.path.exists(path):
    raise MissingFileError(f'{path} not found; run experiments/separate.py first.')
  with np.load(path) as f:
    arrays = {k: f[k] for k in f.files}
  for key in ('mixtures', 'components'):
    if key not in arrays:
      raise InputFileError(f'{path} has no {key!r} array (it holds {sorted(arrays)}).')
  mixtures, components = arrays['mixtures'], arrays['components']
  if components.ndim == 5:
    components = components[:, None]
  if mixtures.ndim != 4 or components.ndim != 6 or len(components) != len(mixtures):
    raise InputFileError(f'{path}: mixtures {mixtures.shape} and components '
                         f'{components.shape} are not [N,H,W,C] and [N,(S,)k,H,W,C].')
  if mixtures.shape[1:3] != components.shape[3:5]:
    raise InputFileError(f'{path}: mixtures {mixtures.shape} and components '
                         f'{components.shape} disagree in image size.')
  truth = arrays.get('ground_truth')
  if truth is not None and truth.shape != components.shape[:1] + components.shape[2:]:
    raise InputFileError(f'{path}: ground_truth {truth.shape} does not match components '
                         f'{components.shape}.')
  config = None
  config_path = os.path.join(workdir, 'config.json')
  if os.path.exists(config_path):
    with open(config_path) as f:
      config = json.load(f)
  alphas = arrays.get('alphas')
  if alphas is None:
    alphas = _nested_get(config, 'mixing', 'alphas')
  if alphas is not None:
    alphas = tuple(float(a) for a in np.atleast_1d(alphas))
    if len(alphas) == 1:
      alphas *= components.shape[2]
  samples = arrays.get('samples')
  if samples is not None and (samples.ndim != 6 or samples.shape[0] != len(components)
                              or samples.shape[2:] != components.shape[2:]):
    raise InputFileError(f'{path}: samples {samples.shape} do not match components '
                         f'{components.shape}.')
  return Separations(mixtures.astype(np.float32), components.astype(np.float32),
                     None if truth is None else truth.astype(np.float32),
                     arrays.get('indices'), alphas, config,
                     None if samples is None else samples.astype(np.float32))


def _average_estimates(sep: Separations) -> np.ndarray:
  """metrics.average_baseline of a run's mixtures, as [N, k, H, W, C]."""
  return metrics.average_baseline(sep.mixtures, sep.num_components, sep.alphas,
                                  channels=sep.components.shape[-1])


def psnr_results(sep: Separations, ssim: bool = False
                 ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """(summary, arrays) of `scores.separation_scores` for a finished run: the keys metrics.json
  and eval.json share, and the per-component ([N, S, k]) and per-mixture ([N]) PSNR."""
  if sep.ground_truth is None:
    raise InputFileError('No ground truth in separations.npz: PSNR needs it.')
  summary, arrays = scores.separation_scores(sep.components, sep.ground_truth, sep.mixtures,
                                             sep.alphas, samples=sep.samples, ssim=ssim)
  if sep.samples is not None:
    summary['select'] = _nested_get(sep.config, 'select') or 'unknown'
  return summary, arrays


# ----------------------------------------------------------------------------- IS / FID


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
  """IS of Salimans et al.: exp(E_x KL(p(y|x) || p(y))) on each of `splits` parts.

  Parts are the consecutive slices [i*n//splits, (i+1)*n//splits) as in the original
  code; returns the mean and (population) standard deviation over parts.
  """
  logits = np.asarray(logits, np.float64)
  if logits.ndim != 2 or len(logits) < splits:
    raise ValueError(f'IS needs [N, classes] logits with N >= {splits}, got {logits.shape}.')
  log_p = logits - logits.max(1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
  n = len(log_p)
  scores = []
  for i in range(splits):
    part = log_p[i * n // splits:(i + 1) * n // splits]
    p = np.exp(part)
    log_marginal = np.log(p.mean(0))
    scores.append(np.exp(np.mean(np.sum(p * (part - log_marginal), 1))))
  return float(np.mean(scores)), float(np.std(scores))


def activation_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and (unbiased) covariance of [N, D] features, in float64."""
  features = np.asarray(features, np.float64)
  return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).

  The trace of the matrix square root is computed as the sum of square roots of the
  eigenvalues of S1^(1/2) S2 S1^(1/2), a symmetric PSD matrix with the same spectrum as
  S1 S2: no complex round-off to discard, unlike a general `sqrtm`.
  """
  mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
  sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f'FID statistics disagree: {mu1.shape}/{sigma1.shape} vs '
                     f'{mu2.shape}/{sigma2.shape}.')
  w, v = np.linalg.eigh(sigma1)
  sqrt1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  middle = sqrt1 @ sigma2 @ sqrt1
  eig = np.linalg.eigvalsh((middle + middle.T) / 2)
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2)
               - 2 * np.sqrt(np.clip(eig, 0, None)).sum())


def reference_statistics(name: str, load_images: Callable[[], np.ndarray],
                         extract: Callable[[np.ndarray], dict[str, np.ndarray]],
                         cache_dir: str, weights_id: str,
                         keep_features: bool = False) -> dict[str, Any]:
  """FID statistics (and IS) of a reference dataset, computed once and cached.

  The cache file is keyed by the dataset name and the network weights' digest, so
  statistics from another network are never reused. `keep_features` also caches the
  features themselves (key 'features', float32), which KID needs; the project classifier's
  96-d features of 50,000 images take 19 MB, Inception's 2048-d ones would take 400 MB.
  """
  cache_dir = os.path.expanduser(cache_dir)
  path = os.path.join(cache_dir, f'{name}_{weights_id[:12]}.npz')
  if os.path.exists(path):
    with np.load(path) as f:
      if not keep_features or 'features' in f.files:
        cached = {'mu': f['mu'], 'sigma': f['sigma'], 'n': int(f['n']),
                  'inception_score': float(f['inception_score']), 'path': path}
        if keep_features:
          cached['features'] = f['features']
        return cached
  images = load_images()
  logging.info('Computing reference statistics of %s (%d images).', name, len(images))
  outputs = extract(images)
  mu, sigma = activation_statistics(outputs['pool'])
  score = inception_score(outputs['logits'])[0] if len(images) >= 10 else float('nan')
  features = {'features': np.asarray(outputs['pool'], np.float32)} if keep_features else {}
  os.makedirs(cache_dir, exist_ok=True)
  atomic.save_npz(path, mu=mu, sigma=sigma, n=len(images), inception_score=score, **features)
  return {'mu': mu, 'sigma': sigma, 'n': len(images), 'inception_score': score,
          'path': path, **features}


def image_scores(images: np.ndarray, extract, reference: dict[str, Any] | None
                 ) -> dict[str, float]:
  """IS (10 splits) and, against `reference` statistics, FID of images [N, H, W, C].

  Images are clipped to [0, 1] first, as saving them as 8-bit files would (runs without a
  final clamp end slightly outside); the clipped fraction is reported.
  """
  clipped = float(np.mean((images < 0) | (images > 1)))
  images = np.clip(images, 0.0, 1.0)
  outputs = extract(images)
  mean, std = inception_score(outputs['logits'])
  scores = {'inception_score': mean, 'inception_score_std': std, 'n_images': len(images),
            'fraction_pixels_clipped': clipped}
  if reference is not None:
    mu, sigma = activation_statistics(outputs['pool'])
    scores['fid'] = frechet_distance(mu, sigma, reference['mu'], reference['sigma'])
  return scores


# ----------------------------------------------------------------------------- reports


def markdown_table(results: dict[str, Any]) -> str:
  """The eval.json numbers as the paper's tables (PSNR: Table 2; IS/FID: Tables 3-4).

  Every key is defined in docs/outputs.md. Colorization reads gray image / colorized /
  original; a sum reads Average / BASIS / truth.
  """
  lines = [f"# Evaluation of {results.get('workdir', '')}", '']
  colorization = results.get('baseline') == 'gray image'
  baseline, ours = ('gray image', 'colorized') if colorization else ('Average', 'BASIS')
  if 'psnr' in results:
    n, k, s = results['n_mixtures'], results['n_components'], results['n_samples']
    if colorization:
      what = f"PSNR of {n} colorized images against the original"
    else:
      what = f"PSNR over {n} mixtures ({k} components each, matched to the truth)"
    selected = 'selected_from' in results
    if selected:
      what += (f", of the sample kept per mixture: one of {results['selected_from']} posterior "
               f"samples, chosen by {results.get('select', 'unknown')} (the others below)")
    elif s > 1:
      what += f", each of {s} posterior samples per mixture scored on its own, then averaged"
    else:
      what += ", one posterior sample per mixture"
    lines += [f"{what}; ± is the 95% interval.", '',
              '| method | PSNR (dB) | std | 95% CI |', '|---|---|---|---|']
    for label, key in ((baseline, 'average_baseline_psnr'), (ours, 'psnr')):
      lines.append(f"| {label} | {results[key]['mean']:.2f} | "
                   f"{results[key]['std']:.2f} | ±{results[key]['ci95']:.2f} |")
    if 'fraction_mixtures_above_average' in results:
      lines += ['', f"{ours} scores above the {baseline} on "
                f"{100 * results['fraction_mixtures_above_average']:.1f} % of the "
                f"{'images' if colorization else 'mixtures'}."]
    if not colorization and results.get('image_shape', [1])[-1] == 3:
      lines += ['', "On natural images PSNR is not the measure: many pairs of images sum to "
                "nearly the same mixture, so a plausible separation can score a low PSNR. The "
                "paper reports Inception Score and FID instead (docs/evaluation.md)."]
    if selected:
      lines += ['', f"The kept sample against the same run's S = {results['selected_from']} "
                "samples per mixture, scored otherwise:", '',
                '| estimate | PSNR (dB) | 95% CI |', '|---|---|---|']
      for label, key in ((f'chosen sample ({ours} above)', 'psnr'),
                         ('one sample (mean over the S)', 'psnr_single_sample'),
                         ('oracle: best of the S by PSNR', 'psnr_oracle'),
                         ('posterior mean of the S (aligned)', 'psnr_posterior_mean')):
        lines.append(f"| {label} | {results[key]['mean']:.2f} | ±{results[key]['ci95']:.2f} |")
    if 'ssim' in results:
      lines += ['', '| method | SSIM |', '|---|---|',
                f"| {baseline} | {results['average_baseline_ssim']['mean']:.4f} |",
                f"| {ours} | {results['ssim']['mean']:.4f} |"]
    lines.append('')
  if 'inception' in results:
    inc = results['inception']
    if 'error' in inc:
      # The full reason is in eval.json and was logged once already.
      lines += ["IS/FID not computed: eval.json's inception.error says why.", '']
    else:
      lines += [f"IS (10 splits) and FID against {inc.get('reference', 'no reference')}.",
                '', '| images | IS | FID |', '|---|---|---|']
      for label, key in ((baseline, 'average'), (ours, 'basis'),
                         ('reference data', 'reference_data')):
        if key in inc:
          fid = inc[key].get('fid')
          lines.append(f"| {label} | {inc[key]['inception_score']:.2f} | "
                       f"{'–' if fid is None else f'{fid:.2f}'} |")
      lines.append('')
  if 'sample_quality' in results:
    from basis_jax.evaluation import sample_quality  # pylint: disable=import-outside-toplevel
    lines += sample_quality.markdown_lines(results['sample_quality'], colorization)
  return '\n'.join(lines)


# ----------------------------------------------------------------------------- driver


def reference_data_config(sep: Separations, reference_data: dict[str, Any] | None):
  """Which dataset FID compares with: as given, else the run's data with split 'train'."""
  if reference_data is not None:
    return dict(reference_data)
  data_config = _nested_get(sep.config, 'data')
  if data_config is None:
    return None
  return {**data_config, 'split': 'train', 'num_examples': None}


def reference_cache_name(ref_config: dict[str, Any]) -> str:
  """A cache name for a reference set: readable fields, then a digest of every field.

  Every field that selects images (path, tfds name, resolution, ...) is in the
  digest, so two folders, two tfds names or two CIFAR-10 files never share an entry.
  """
  import hashlib  # pylint: disable=g-import-not-at-top
  readable = '_'.join(str(ref_config.get(k)) for k in ('source', 'split', 'resolution',
                                                       'num_examples'))
  fields = {k: v for k, v in ref_config.items() if k not in ('download', 'tfds_data_dir')}
  if fields.get('path'):
    fields['path'] = os.path.abspath(os.path.expanduser(fields['path']))
  key = json.dumps(fields, sort_keys=True, default=str)
  return f"{readable}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def inception_results(sep: Separations, *, weights: str | None = None,
                      reference_data: dict[str, Any] | None = None,
                      stats_cache_dir: str = '~/.cache/basis_jax/fid_stats',
                      batch_size: int = 100) -> dict[str, Any]:
  """IS / FID of the separated components and of the Average baseline (Tables 3-4)."""
  from basis_jax.files import data as data_lib, data_formats  # pylint: disable=g-import-not-at-top
  from basis_jax.evaluation import inception  # pylint: disable=g-import-not-at-top
  path = inception.weights_path(weights)
  extract = inception.FeatureExtractor(inception.load(path), batch_size=batch_size)
  out = {'weights': path}
  reference = None
  ref_config = reference_data_config(sep, reference_data)
  if ref_config is not None:
    def load_images():
      images = data_lib.load(ref_config).images
      if images.shape[1:] != sep.components.shape[3:]:
        raise ValueError(f'The FID reference images are {images.shape[1:]} but the '
                         f'separations are {sep.components.shape[3:]}; set reference_data '
                         'to a dataset of the separations\' size.')
      return images
    name = reference_cache_name(ref_config)
    reference = reference_statistics(name, load_images, extract, stats_cache_dir,
                                     data_formats.file_digest(path))
    out['reference'] = f"{ref_config.get('source')} {ref_config.get('split')} " \
                       f"({reference['n']} images)"
    out['reference_data'] = {'inception_score': reference['inception_score'],
                             'stats': reference['path']}
  image_shape = sep.components.shape[3:]
  out['basis'] = image_scores(sep.components.reshape((-1,) + image_shape), extract,
                              reference)
  out['average'] = image_scores(_average_estimates(sep).reshape((-1,) + image_shape),
                                extract, reference)
  return out


def evaluate(workdir: str, *, ssim: bool = False, inception: str = 'auto',
             inception_weights: str | None = None,
             reference_data: dict[str, Any] | None = None,
             stats_cache_dir: str = '~/.cache/basis_jax/fid_stats',
             batch_size: int = 100, histogram_bins: int = 40,
             classifier: str = 'auto') -> dict[str, Any]:
  """Scores `workdir/separations.npz`; writes eval.json, eval.md, psnr_histogram.png.

  inception: 'auto' computes IS/FID when the Inception weights exist (and records why
  not otherwise), 'required' raises without them, 'never' skips them.
  classifier: the CIFAR-10 sample-quality scores in a classifier's features
  (sample_quality.py): 'auto' with the committed classifier when it exists (and records
  why not when the data cannot be read), a weights path (required), or 'never'.
  """
  from basis_jax.evaluation import sample_quality  # pylint: disable=import-outside-toplevel
  if inception not in ('auto', 'required', 'never'):
    raise ConfigError(f"inception={inception!r}; expected 'auto', 'required' or 'never'.")
  sep = load_separations(workdir)
  colorization = sep.mixtures.shape[-1] == 1 and sep.components.shape[-1] > 1
  results: dict[str, Any] = {'workdir': workdir, 'n_components': sep.num_components,
                             'n_mixtures': len(sep.mixtures),
                             'n_samples': sep.components.shape[1],
                             'image_shape': list(sep.components.shape[3:]),
                             'baseline': 'gray image' if colorization else 'Average'}
  if sep.ground_truth is not None:
    summary, arrays = psnr_results(sep, ssim=ssim)
    results.update(summary)
    hist_path = os.path.join(workdir, 'psnr_histogram.png')
    counts = metrics.write_histogram_png(arrays['component_psnr'], hist_path,
                                         bins=histogram_bins)
    results['histogram'] = {'path': hist_path, 'counts': counts.tolist()}
  if inception == 'auto' and sep.components.shape[-1] != 3:
    pass  # IS/FID are defined on RGB images (CIFAR-10); an MNIST run needs no warning.
  elif inception != 'never':
    try:
      results['inception'] = inception_results(
          sep, weights=inception_weights, reference_data=reference_data,
          stats_cache_dir=stats_cache_dir, batch_size=batch_size)
    except FileNotFoundError as e:
      if inception == 'required':
        raise
      logging.warning('Skipping IS/FID: %s', e)
      results['inception'] = {'error': str(e)}
  classifier_path = sample_quality.classifier_for(sep, classifier, reference_data)
  if classifier_path is not None:
    try:
      results['sample_quality'] = sample_quality.sample_quality_results(
          sep, classifier_path, reference_data=reference_data, stats_cache_dir=stats_cache_dir)
    except InputFileError as e:
      if classifier != 'auto':
        raise
      logging.warning('Skipping the classifier scores: %s', e)
      results['sample_quality'] = {'error': str(e)}
  atomic.write_json(os.path.join(workdir, 'eval.json'), results)
  with atomic.atomic_open(os.path.join(workdir, 'eval.md'), 'w') as f:
    f.write(markdown_table(results))
  return results
