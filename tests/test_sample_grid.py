"""experiments.sample_grid / score_training.write_sample_grid: a prior's unconditional samples."""

import numpy as np
import pytest
from PIL import Image

from basis_jax import errors

from basis_jax.training import score_training

from basis_jax.evaluation import visualize
from basis_jax.priors import score_unet
from configs import train_score_unet_cifar10, train_score_unet_mnist


def _tiny_sampling(config):
  config.sampling.update(num_samples=4, num_levels=2, steps_per_level=2)
  return config


def test_grid_of_the_shipped_mnist_weights(tmp_path):
  path = tmp_path / "grid.png"
  config = _tiny_sampling(train_score_unet_mnist.get_config())
  score_training.write_sample_grid(config, score_unet.shipped_weights("mnist"), str(path), seed=3)
  grid = np.asarray(Image.open(path))
  expected = visualize.image_grid(np.zeros((4, 28, 28, 1), np.float32)).shape
  assert grid.shape[:2] == (2 * expected[0], 2 * expected[1])
  assert grid.std() > 10  # Samples, not a blank page.


def test_weights_of_another_dataset_are_refused_naming_both_shapes(tmp_path):
  config = _tiny_sampling(train_score_unet_cifar10.get_config())
  with pytest.raises(errors.UserError) as e:
    score_training.write_sample_grid(config, score_unet.shipped_weights("mnist"),
                                 str(tmp_path / "grid.png"))
  assert "28" in str(e.value) and "32" in str(e.value), str(e.value)
  assert not (tmp_path / "grid.png").exists()
