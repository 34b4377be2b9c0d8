"""IS / FID formulas, separations.npz reading and the evaluate driver."""

import json
import os

import numpy as np
import pytest

import inception_fixture
from basis_jax.evaluation import report, inception

TESTDATA = os.path.join(os.path.dirname(__file__), 'fixtures')


def _fid_scipy(mu1, s1, mu2, s2):
  from scipy import linalg  # pylint: disable=g-import-not-at-top
  covmean = linalg.sqrtm(s1 @ s2).real
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def test_fid_matches_pytorch_fid_and_sqrtm():
  a, b = inception_fixture.fid_features()
  sa, sb = report.activation_statistics(a), report.activation_statistics(b)
  fid = report.frechet_distance(*sa, *sb)
  golden = float(np.load(os.path.join(TESTDATA, inception_fixture.GOLDEN))['fid'])
  # pytorch-fid's calculate_frechet_distance on the same features (golden): 198.382066.
  assert abs(fid - golden) / golden <= 1e-6
  assert abs(fid - _fid_scipy(*sa, *sb)) / fid <= 1e-6
  assert abs(report.frechet_distance(*sa, *sa)) < 1e-6


def test_fid_live_pytorch_fid():
  fid_score = pytest.importorskip('pytorch_fid.fid_score')
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(300, 32)), rng.normal(size=(300, 32)) * 1.5 + 0.1
  sa, sb = report.activation_statistics(a), report.activation_statistics(b)
  expected = fid_score.calculate_frechet_distance(*sa, *sb)
  assert abs(report.frechet_distance(*sa, *sb) - expected) / expected <= 1e-6


def _is_loops(logits, splits):
  p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  n, scores = len(p), []
  for i in range(splits):
    part = p[i * n // splits:(i + 1) * n // splits]
    py = part.mean(0)
    scores.append(np.exp(np.mean([np.sum(px * (np.log(px) - np.log(py))) for px in part])))
  return np.mean(scores), np.std(scores)


def test_inception_score():
  logits = np.random.default_rng(0).normal(size=(103, 1008)) * 3
  np.testing.assert_allclose(report.inception_score(logits), _is_loops(logits, 10),
                             rtol=1e-10)
  assert report.inception_score(np.zeros((50, 1008)))[0] == pytest.approx(1.0)
  # 10 confidently and evenly predicted classes per split: IS = 10.
  confident = np.tile(np.eye(1008)[:10] * 50, (10, 1))
  assert report.inception_score(confident)[0] == pytest.approx(10.0, rel=1e-6)
  with pytest.raises(ValueError):
    report.inception_score(np.zeros((5, 1008)))


def _write_run(workdir, n=30, samples=False, seed=0):
  rng = np.random.default_rng(seed)
  truth = rng.random((n, 2, 16, 16, 1)).astype(np.float32)
  components = np.clip(truth[:, ::-1] + 0.03 * rng.normal(size=truth.shape), 0, 1)
  if samples:
    components = np.stack([components, truth], 1)
  np.savez(os.path.join(workdir, 'separations.npz'), mixtures=truth.sum(1),
           components=components.astype(np.float32), ground_truth=truth,
           indices=np.zeros((n, 2), np.int64))
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    json.dump({'data': {'source': 'mnist'}, 'mixing': {'alphas': [1.0, 1.0]}}, f)
  return truth, components


def test_load_separations(tmp_path):
  _write_run(str(tmp_path), samples=True)
  sep = report.load_separations(str(tmp_path))
  assert sep.components.shape == (30, 2, 2, 16, 16, 1) and sep.alphas == (1.0, 1.0)
  np.savez(tmp_path / 'separations.npz', mixtures=np.zeros((3, 8, 8, 1)),
           components=np.zeros((3, 2, 8, 8, 1)), ground_truth=np.zeros((3, 3, 8, 8, 1)))
  with pytest.raises(ValueError, match='ground_truth'):
    report.load_separations(str(tmp_path))
  with pytest.raises(FileNotFoundError, match='separate.py'):
    report.load_separations(str(tmp_path / 'missing'))


def test_evaluate_writes_tables(tmp_path, monkeypatch):
  monkeypatch.setenv(inception.WEIGHTS_ENV, str(tmp_path / 'no_weights.npz'))
  truth, _ = _write_run(str(tmp_path))
  results = report.evaluate(str(tmp_path), ssim=True)
  for key in ('psnr', 'average_baseline_psnr', 'ssim', 'average_baseline_ssim'):
    assert set(results[key]) == {'mean', 'std', 'ci95', 'n'} and results[key]['n'] == 30
  assert results['n_mixtures'] == 30
  assert results['psnr']['mean'] == pytest.approx(30.5, abs=0.5)  # noise 0.03 -> ~30.5 dB
  assert results['average_baseline_psnr']['mean'] < results['psnr']['mean']
  assert results['ssim']['mean'] > results['average_baseline_ssim']['mean']
  assert results['fraction_mixtures_above_average'] == 1.0  # Every mixture: 30 dB vs ~8.
  assert 'on 100.0 % of the mixtures' in (tmp_path / 'eval.md').read_text()
  # Half the mixtures swapped for the Average itself (m/2 each): they no longer beat it.
  sep = report.load_separations(str(tmp_path))
  sep.components[:15, 0] = sep.mixtures[:15, None] / 2
  swapped, arrays = report.psnr_results(sep)
  assert swapped['fraction_mixtures_above_average'] == 0.5
  assert arrays['mixture_psnr'].shape == (30,)  # Per mixture, as the summary averages.
  assert arrays['mixture_psnr'].mean() == pytest.approx(swapped['psnr']['mean'])
  assert 'inception' not in results  # One channel (MNIST): IS/FID do not apply, no warning.
  with open(tmp_path / 'eval.json') as f:
    assert json.load(f)['psnr'] == results['psnr']
  assert '| BASIS |' in (tmp_path / 'eval.md').read_text()
  assert os.path.getsize(tmp_path / 'psnr_histogram.png') > 0
  with pytest.raises(FileNotFoundError):
    report.evaluate(str(tmp_path), inception='required')


def test_evaluate_inception_plumbing(tmp_path, monkeypatch):
  """IS/FID wiring and the reference cache, with a cheap stand-in for the network."""
  from basis_jax.files import data  # pylint: disable=g-import-not-at-top

  class FakeExtractor:
    calls = []

    def __init__(self, model, batch_size):
      del model, batch_size

    def __call__(self, images):
      FakeExtractor.calls.append(len(images))
      flat = images.reshape(len(images), -1)[:, :16].astype(np.float64)
      return {'pool': flat, 'logits': np.pad(flat * 10, ((0, 0), (0, 8)))}

  weights = tmp_path / 'w.npz'
  weights.write_bytes(b'fake')
  monkeypatch.setattr(inception, 'load', lambda path: None)
  monkeypatch.setattr(inception, 'FeatureExtractor', FakeExtractor)
  reference = np.random.default_rng(0).random((40, 16, 16, 1)).astype(np.float32)
  monkeypatch.setattr(data, 'load', lambda cfg: data.Dataset('ref', reference))
  _write_run(str(tmp_path))
  kwargs = dict(inception='required', inception_weights=str(weights),
                stats_cache_dir=str(tmp_path / 'cache'))
  first = report.evaluate(str(tmp_path), **kwargs)['inception']
  assert FakeExtractor.calls == [40, 60, 60]  # reference, 30x2 components, 30x2 average
  second = report.evaluate(str(tmp_path), **kwargs)['inception']
  assert FakeExtractor.calls[3:] == [60, 60]  # reference statistics came from the cache
  assert first['basis']['fid'] == pytest.approx(second['basis']['fid'])
  assert first['average']['fid'] > 0 and 'inception_score' in first['basis']


def test_reference_cache_names_tell_datasets_apart():
  """Two folders, two tfds names or two CIFAR-10 files must not share FID statistics."""
  base = {'source': 'image_folder', 'split': 'train', 'variant': None, 'resolution': 64,
          'num_examples': None, 'path': '/data/churches'}
  names = {report.reference_cache_name(cfg) for cfg in (
      base, {**base, 'path': '/data/bedrooms'},
      {**base, 'source': 'tfds', 'path': None, 'tfds_name': 'lsun/church_outdoor'},
      {**base, 'source': 'tfds', 'path': None, 'tfds_name': 'lsun/bedroom'},
      {**base, 'source': 'cifar10', 'path': '/data/cifar10.npz'},
      {**base, 'source': 'cifar10', 'path': '/data/cifar10_jpeg.npz'})}
  assert len(names) == 6
  assert report.reference_cache_name(base) == report.reference_cache_name(dict(base))


def test_eval_md_says_once_how_many_samples_a_mixture_had():
  stats = {'mean': 29.0, 'std': 6.0, 'ci95': 0.5, 'n': 500}
  results = {'workdir': 'runs/x', 'n_mixtures': 500, 'n_components': 2, 'n_samples': 1,
             'image_shape': [28, 28, 1], 'baseline': 'Average',
             'fraction_mixtures_above_average': 0.99,
             'select': 'likelihood', 'selected_from': 2,
             **{k: stats for k in ('psnr', 'average_baseline_psnr', 'psnr_single_sample',
                                   'psnr_oracle', 'psnr_posterior_mean')}}
  text = report.markdown_table(results)
  assert ('PSNR over 500 mixtures (2 components each, matched to the truth), of the sample '
          'kept per mixture: one of 2 posterior samples, chosen by likelihood') in text
  assert 'sample(s)' not in text and 'S = 2 samples per mixture' in text
  assert 'PSNR is not the measure' not in text
  results['image_shape'] = [32, 32, 3]
  assert 'On natural images PSNR is not the measure' in report.markdown_table(results)
