"""Separation configs with the NCSN prior: released-runner defaults and an end-to-end run."""

import os

import numpy as np
import pytest

from basis_jax.files import checkpoint_io

from basis_jax.sampling import schedules, separation
from basis_jax.priors import ncsn
from configs import cifar_color_ncsn, cifar_ncsn, mnist_ncsn
from convert_weights import ncsn as convert_ncsn

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def test_released_runner_defaults():
  mnist, cifar = mnist_ncsn.get_config(), cifar_ncsn.get_config()
  color = cifar_color_ncsn.get_config()
  for config in (mnist, cifar, color):
    schedule = schedules.from_config(config.schedule)
    np.testing.assert_allclose(schedule.sigmas, np.geomspace(1.0, 0.01, 10), rtol=1e-6)
    assert schedule.steps_per_level == 100 and config.sampler.init == "uniform"
    assert config.prior.name == "ncsn" and "weights" in config.prior
  assert (mnist.schedule.step_lr, mnist.schedule.likelihood_weight) == (3e-5, 2.0)
  assert tuple(mnist.sampler.clamp) == (0.0, 1.0) and tuple(mnist.mixing.alphas) == (1.0, 1.0)
  assert (cifar.schedule.step_lr, cifar.schedule.likelihood_weight) == (3e-5, 1.0)
  assert tuple(cifar.sampler.clamp) == () and cifar.prior.dataset == "cifar10"
  assert (color.schedule.step_lr, color.mixing.kind, color.mixture.num_components) == (
      2e-5, "grayscale", 1)
  assert mnist_ncsn.get_config("class_split").mixture.kind == "class_split"
  with pytest.raises(ValueError, match="Unknown variant"):
    cifar_ncsn.get_config("nonsense")


def test_mnist_separation_runs_end_to_end_with_converted_weights(tmp_path, shared_data):
  with np.load(os.path.join(FIXTURES, "ncsn_golden_mnist.npz")) as data:
    state = {k[len("sd/module."):]: data[k] for k in data.files if k.startswith("sd/")}
  config = convert_ncsn.infer_config(state, "mnist")
  weights = str(tmp_path / "ncsn_mnist.npz")
  checkpoint_io.save_params(weights, convert_ncsn.convert_state_dict(state, config),
                            {"architecture": ncsn.ARCHITECTURE, "config": config.to_dict()})
  config = mnist_ncsn.get_config()
  config.prior.weights = weights
  config.data.path = str(shared_data / "mnist")
  config.schedule.steps_per_level = 1
  config.num_mixtures = config.batch_size = 8
  workdir = str(tmp_path / "run")
  separation.run(config, workdir)
  with np.load(os.path.join(workdir, "separations.npz")) as out:
    assert out["components"].shape == (8, 2, 28, 28, 1)
    assert out["components"].min() >= 0.0 and out["components"].max() <= 1.0  # clamped
