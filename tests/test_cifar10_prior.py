"""The CIFAR-10 side of the shipped prior: configs, exact test pixels, bad input."""

import logging
import os

import numpy as np
import pytest

from basis_jax.files import checkpoint_io

from basis_jax.sampling import mixing, sampler, schedules, separation

from basis_jax.training import score_training
from basis_jax.training import train_resume
from basis_jax.errors import ConfigError
from basis_jax.priors import ncsn, score_unet
from configs import cifar_color_unet, cifar_ncsn, cifar_unet, score_unet_common
from configs import train_score_unet_cifar10

SCHEDULE = schedules.Schedule(sigmas=(1.0, 0.1), steps_per_level=1, step_lr=1e-5)


def test_heldout_variants_separate_exactly_the_images_training_held_out():
  train = train_score_unet_cifar10.get_config()
  first = 50_000 - train.heldout.num_images  # The trainer holds out the last N of 50,000.
  for config in (cifar_unet.get_config("heldout"), cifar_color_unet.get_config("heldout")):
    assert (config.data.split, config.data.first_example) == ("train", first)
    assert config.prior.dataset == train.model.dataset == "cifar10"
  assert cifar_unet.get_config("class_split").mixture.kind == "class_split"
  # The training σ range covers the separation ladder, as the trainer's docstring promises.
  config = cifar_unet.get_config()
  assert train.sigmas.sigma_min < config.schedule.sigma_min < config.schedule.sigma_max
  assert config.schedule.sigma_max < train.sigmas.sigma_max
  # The likelihood bound spans the CIFAR-10 training range, not MNIST's [0.005, 17].
  for config in (cifar_unet.get_config(), cifar_color_unet.get_config()):
    bound = config.prior.likelihood
    assert (bound.sigma_min, bound.sigma_max) == (train.sigmas.sigma_min, 54.0)


def _weights_for(tmp_path, name, image_size, channels):
  """A score_unet weights file whose metadata says which images it was trained on."""
  path = str(tmp_path / f"{name}.npz")
  cfg = score_unet.ScoreUNetConfig(channels=channels, image_size=image_size, widths=(8, 8))
  checkpoint_io.save_params(path, {"params": {"w": np.zeros(3)}},
                            {"architecture": score_unet.ARCHITECTURE, "config": cfg.to_dict(),
                             "sigma_range": [0.005, 54.0]})
  return path


def test_weights_for_the_other_dataset_are_refused_naming_both_shapes(tmp_path):
  cifar_weights = _weights_for(tmp_path, "cifar", 32, 3)
  mnist_weights = _weights_for(tmp_path, "mnist", 28, 1)
  prior = score_unet_common.unet_prior()
  prior.weights = cifar_weights
  with pytest.raises(checkpoint_io.CheckpointError,
                     match="network for 32×32×3 images, but this config's data are 28×28×1"):
    score_unet.load(prior, SCHEDULE)
  prior = cifar_unet.get_config().prior
  prior.weights = mnist_weights
  with pytest.raises(checkpoint_io.CheckpointError,
                     match="network for 28×28×1 images, but this config's data are 32×32×3"):
    score_unet.load(prior, SCHEDULE)


def test_missing_cifar10_weights_name_the_way_to_get_them(monkeypatch):
  monkeypatch.setattr(score_unet, "shipped_weights", lambda dataset: None)
  with pytest.raises(ConfigError) as unet_error:
    score_unet.load(cifar_unet.get_config().prior, SCHEDULE)
  assert "configs/train_score_unet_cifar10.py" in unet_error.value.hint
  # The published NCSN cannot ship: its error names the project's prior and the converter.
  with pytest.raises(ConfigError) as ncsn_error:
    ncsn.load(cifar_ncsn.get_config().prior, None)
  assert "configs/cifar_unet.py" in ncsn_error.value.hint
  assert "convert_weights.ncsn" in ncsn_error.value.hint


def test_colorization_with_a_one_channel_prior_is_refused():
  gray = mixing.from_config(cifar_color_unet.get_config().mixing)
  with pytest.raises(ConfigError, match="3-channel components"):
    gray(np.zeros((1, 1, 28, 28, 1), np.float32))


def _tiny(config, **updates):
  """The shipped prior on a 2-step schedule."""
  config.schedule.update(num_levels=2, steps_per_level=1)
  config.update(num_mixtures=3, batch_size=3, **updates)
  return config


@pytest.mark.parametrize("make", [cifar_unet.get_config, cifar_color_unet.get_config])
def test_runs_on_the_exact_test_pixels(make, shared_data, tmp_path):
  exact = shared_data / "cifar10" / "cifar10_exact_subset.npz"
  config = _tiny(make())
  config.data.path = str(exact)
  separation.run(config, str(tmp_path))
  with np.load(tmp_path / "separations.npz") as out, np.load(exact) as ref:
    truth, mixtures = out["ground_truth"], out["mixtures"]
    components = out["components"]
    pixels = ref["x_test_first1000"].astype(np.float32) / 255.0
  assert components.shape == truth.shape
  # Every ground-truth image is one of the exact test images, bit for bit.
  flat = pixels.reshape(len(pixels), -1)
  for image in truth.reshape(-1, flat.shape[1]):
    assert (np.abs(flat - image).max(axis=1) == 0).any()
  if make is cifar_color_unet.get_config:
    assert truth.shape == (3, 1, 32, 32, 3) and mixtures.shape == (3, 32, 32, 1)
    np.testing.assert_allclose(mixtures[..., 0], truth[:, 0].mean(-1), atol=1e-6)
  else:
    assert truth.shape == (3, 2, 32, 32, 3)
    np.testing.assert_allclose(mixtures, truth.sum(1), atol=1e-6)


STATE = os.path.join(os.path.dirname(__file__), "..", "training", "score_unet_cifar10",
                     "weights.npz")


def test_a_ladder_beyond_the_trained_sigma_range_is_refused_naming_it(caplog):
  prior = cifar_unet.get_config().prior
  prior.weights = STATE  # The committed training state (trained for σ in [0.005, 54]).
  beyond = schedules.Schedule(sigmas=(100.0, 1.0, 0.01), steps_per_level=1, step_lr=1e-5)
  with pytest.raises(ConfigError, match=r"trained for σ in \[0.005, 54\].*σ = 100, outside"):
    score_unet.load(prior, beyond)
  prior.allow_sigma_extrapolation = True
  with caplog.at_level(logging.WARNING):
    score_unet.load(prior, beyond)
  assert "σ = 100, outside" in caplog.text
  caplog.clear()
  prior.allow_sigma_extrapolation = False
  with caplog.at_level(logging.WARNING):
    score_unet.load(prior, SCHEDULE)  # σ 1 and 0.1: inside, no warning.
  assert "trained for σ" not in caplog.text


def test_a_grayscale_mixture_with_three_channels_is_refused():
  config = _tiny(cifar_color_unet.get_config())
  job = separation.build_job(config)
  assert job.separate.mixture_shape == (32, 32, 1)
  with pytest.raises(ConfigError, match=r"Mixture shape \(32, 32, 3\) does not match .* "
                     r"expect \(32, 32, 1\)"):
    sampler.validate_mixtures(np.zeros((2, 32, 32, 3), np.float32), job.separate.mixture_shape)


def test_a_truncated_training_state_is_refused_naming_the_file(tmp_path):
  truncated = tmp_path / "weights.npz"
  with open(STATE, "rb") as f:
    truncated.write_bytes(f.read()[: os.path.getsize(STATE) // 2])
  config = train_score_unet_cifar10.get_config()
  with pytest.raises(checkpoint_io.CheckpointError, match="weights.npz"):
    train_resume.load_into(str(truncated), {"params": {}}, architecture=score_unet.ARCHITECTURE,
                           model_config=score_training.model_config(config), seed=config.seed)
  prior = cifar_unet.get_config().prior
  prior.weights = str(truncated)
  with pytest.raises(checkpoint_io.CheckpointError, match="weights.npz"):
    score_unet.load(prior, SCHEDULE)
