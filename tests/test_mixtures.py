"""Mixture construction: reproducibility, class split, k components, grayscale, images."""

import ml_collections
import numpy as np
import pytest
from PIL import Image

from basis_jax import errors

from basis_jax.sampling import mixing

from basis_jax.files import mixtures
from test_data import write_mnist


@pytest.fixture(name='mnist_dir', scope='module')
def _mnist_dir(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp('mnist'))
  write_mnist(folder, n=40)
  return folder


def _config(mnist_dir, alphas=None, **mixture):
  config = ml_collections.ConfigDict({
      'data': {'source': 'mnist', 'path': mnist_dir, 'verify_checksums': False},
      'mixture': mixture})
  if alphas is not None:
    config.mixing = {'kind': 'sum', 'alphas': alphas}
  return config


def _mixed(ms, operator=None):
  """The mixtures of a picked set, made as a run makes them (g of basis_jax.sampling.mixing)."""
  return mixing.mix(operator or mixing.Sum(ms.alphas), ms.ground_truth)


def test_agnostic_is_reproducible_and_prefix_stable(mnist_dir):
  a = mixtures.from_config(_config(mnist_dir, num_mixtures=10, seed=3), (28, 28, 1))
  b = mixtures.from_config(_config(mnist_dir, num_mixtures=25, seed=3), (28, 28, 1))
  c = mixtures.from_config(_config(mnist_dir, num_mixtures=10, seed=4), (28, 28, 1))
  assert a.mixtures is None and a.ground_truth.shape == (10, 2, 28, 28, 1)  # Picked only.
  assert _mixed(a).shape == (10, 28, 28, 1)
  np.testing.assert_array_equal(a.indices, b.indices[:10])
  assert not np.array_equal(a.indices, c.indices)
  assert np.all(a.indices[:, 0] != a.indices[:, 1])
  np.testing.assert_allclose(_mixed(a), a.ground_truth.sum(1), atol=1e-6)


def test_class_split_and_distinct_classes(mnist_dir):
  ms = mixtures.from_config(_config(mnist_dir, kind='class_split', num_mixtures=30),
                            (28, 28, 1))
  labels = np.arange(40) % 10  # write_mnist labels
  assert np.all(labels[ms.indices[:, 0]] <= 4) and np.all(labels[ms.indices[:, 1]] >= 5)
  ms = mixtures.from_config(_config(mnist_dir, num_mixtures=30, distinct_classes=True),
                            (28, 28, 1))
  assert np.all(labels[ms.indices[:, 0]] != labels[ms.indices[:, 1]])
  with pytest.raises(ValueError, match='class groups for 3 components'):
    mixtures.from_config(_config(mnist_dir, kind='class_split', num_components=3),
                         (28, 28, 1))


def test_k_components_with_alphas(mnist_dir):
  cfg = _config(mnist_dir, num_components=3, alphas=(0.2, 0.3, 0.5), num_mixtures=4)
  ms = mixtures.from_config(cfg, (28, 28, 1))
  assert ms.ground_truth.shape == (4, 3, 28, 28, 1) and ms.alphas == (0.2, 0.3, 0.5)
  expected = np.einsum('k,nkhwc->nhwc', np.array(ms.alphas), ms.ground_truth)
  np.testing.assert_allclose(_mixed(ms), expected, atol=1e-6)
  # alphas come from config.mixing.alphas only (default: ones); config.mixture's are refused.
  assert mixtures.from_config(_config(mnist_dir, num_mixtures=2), (28, 28, 1)).alphas == \
      (1.0, 1.0)
  with pytest.raises(errors.ConfigError, match='config.mixing.alphas only'):
    mixtures.from_config({'mixture': {'alphas': (0.5, 0.5)}}, (28, 28, 1))
  with pytest.raises(ValueError, match='2 mixing weights given for 3'):
    mixtures.from_config(_config(mnist_dir, num_components=3, alphas=(1., 1.)), (28, 28, 1))


def test_grayscale_and_glow_shapes(mnist_dir, tmp_path):
  rng = np.random.default_rng(0)
  for i in range(6):  # Colour images of Glow's 32×32×3.
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(tmp_path / f'c{i}.png')
  cfg = _config(mnist_dir, kind='grayscale', num_mixtures=5)
  cfg.data = {'source': 'image_folder', 'path': str(tmp_path)}
  ms = mixtures.from_config(cfg, (32, 32, 3))
  gray = _mixed(ms, mixing.Grayscale())
  assert gray.shape == (5, 32, 32, 1) and ms.ground_truth.shape == (5, 1, 32, 32, 3)
  assert len(np.unique(ms.indices)) == 5
  np.testing.assert_allclose(gray, ms.ground_truth[:, 0].mean(-1, keepdims=True), atol=1e-6)
  with pytest.raises(ValueError, match='prior expects'):
    mixtures.from_config(_config(mnist_dir), (32, 32, 3))


def test_user_images(tmp_path):
  for i in range(2):
    Image.fromarray(np.full((28, 28), 60 * i, np.uint8)).save(tmp_path / f'm{i}.png')
  cfg = ml_collections.ConfigDict({'mixture': {'kind': 'images', 'files': str(tmp_path)},
                                   'mixing': {'alphas': (0.5, 0.5)}})
  ms = mixtures.from_config(cfg, (28, 28, 1))
  assert ms.mixtures.shape == (2, 28, 28, 1) and ms.ground_truth is None
  assert ms.names == ('m0.png', 'm1.png')
  np.testing.assert_allclose(ms.mixtures[1], 60 / 255, atol=1e-6)
  with pytest.raises(ValueError, match=r'28x28 \(width x height\).*separates 32x32'):
    mixtures.from_config(cfg, (32, 32, 3))
  with pytest.raises(ValueError, match='needs config.mixture.files'):
    mixtures.from_config({'mixture': {'kind': 'images'}}, (28, 28, 1))
  with pytest.raises(ValueError, match='does not exist'):
    mixtures.from_config({'mixture': {'kind': 'images', 'files': 'nope.png'}}, (28, 28, 1))


def test_user_images_of_a_sum_need_their_scale(tmp_path):
  """α = (1, 1) mixtures span [0, 2]; an 8-bit file cannot hold that as [0, 1] pixels."""
  Image.fromarray(np.full((28, 28), 255, np.uint8)).save(tmp_path / 'm.png')
  cfg = ml_collections.ConfigDict({'mixture': {'kind': 'images', 'files': str(tmp_path)},
                                   'mixing': {'alphas': (1.0, 1.0)}})
  with pytest.raises(errors.ConfigError, match=r'span \[0, 2\]'):
    mixtures.from_config(cfg, (28, 28, 1))
  cfg.mixture.image_scale = 2.0
  np.testing.assert_allclose(mixtures.from_config(cfg, (28, 28, 1)).mixtures, 2.0)


def test_config_defaults_are_complete():
  cfg = mixtures.mixture_config_defaults()
  assert cfg.kind == 'agnostic' and cfg.num_components == 2 and cfg.seed == 0
  cfg.num_mixtures = 10
  with pytest.raises(ValueError, match='kind'):
    mixtures.from_config({'mixture': {'kind': 'weird'}}, (28, 28, 1))
