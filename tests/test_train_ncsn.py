"""NCSN training: exact resume, compact weights, DSM loss and the Langevin sampler."""

import gzip
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from basis_jax.files import checkpoint_io

from basis_jax.training import dsm, score_training
from basis_jax.priors import ncsn
from configs import mnist_ncsn, train_ncsn_mnist


def _write_idx(path, array):
  header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.tobytes())


def _tiny_config(tmp_path, **overrides):
  """ngf 4 on 64 random 'MNIST' images written as idx files (no shared data needed)."""
  config = train_ncsn_mnist.get_config()
  rng = np.random.default_rng(0)
  _write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (64, 28, 28), np.uint8))
  _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, (64,), np.uint8))
  config.data.path, config.data.verify_checksums = str(tmp_path), False
  config.model.ngf = 4
  config.training.batch_size = 8  # One row per fake CPU device (tests/conftest.py).
  config.num_steps = 4
  config.log_every = 2
  config.checkpoint_every = 2
  config.ema_rate = 0.9
  config.sampling.every = 0
  for key, value in overrides.items():
    config[key] = value
  return config


def _leaves(state):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(state)]


def test_resume_is_bit_identical_and_compact_weights_load(tmp_path):
  config = _tiny_config(tmp_path)
  straight = score_training.train_and_evaluate(config, str(tmp_path / "straight"))
  score_training.train_and_evaluate(config, str(tmp_path / "resumed"), stop_after=2)
  resumed = score_training.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert int(straight["step"]) == int(resumed["step"]) == 4
  assert set(straight) == {"step", "params", "opt_state", "ema"}
  for a, b in zip(_leaves(straight), _leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  logs = [[json.loads(line) for line in open(tmp_path / run / "metrics.jsonl")]
          for run in ("straight", "resumed")]
  assert [r["loss"] for r in logs[0]] == [r["loss"] for r in logs[1]]
  assert len(logs[0][-1]["loss_per_level"]) == 10

  # A wall-clock budget stops early but checkpoints first; the next run resumes exactly.
  budget = _tiny_config(tmp_path, max_seconds=1e-6)
  stopped = score_training.train_and_evaluate(budget, str(tmp_path / "budget"))
  assert int(stopped["step"]) == 1
  finished = score_training.train_and_evaluate(config, str(tmp_path / "budget"))
  for a, b in zip(_leaves(straight), _leaves(finished)):
    np.testing.assert_array_equal(a, b)

  # The compact file holds params and EMA; the prior loads the EMA weights.
  weights = str(tmp_path / "straight" / "weights.npz")
  assert checkpoint_io.read_metadata(weights)["step"] == 4
  section = mnist_ncsn.ncsn_prior("mnist")
  section.weights = weights
  prior = ncsn.load(section)
  for a, b in zip(_leaves(prior.params), _leaves(straight["ema"])):
    np.testing.assert_array_equal(a, b)

  # Training can start from a compact file (params and EMA restored, step restarts).
  config = _tiny_config(tmp_path, init_weights=weights)
  _, state = score_training.init_state(config)
  for a, b in zip(_leaves(state["params"]), _leaves(straight["params"])):
    np.testing.assert_array_equal(a, b)


def test_dsm_loss_is_zero_for_the_exact_score_of_a_point_mass():
  """For data at one point x0 the noisy score is -(x̃-x0)/σ², and the loss vanishes."""
  x0 = jnp.full((6, 4, 4, 1), 0.3)
  sigmas = (1.0, 0.1, 0.01)

  def exact_score(params, x, levels):
    del params
    sigma = jnp.asarray(sigmas)[levels][:, None, None, None]
    return -(x - 0.3) / sigma**2

  losses, levels = dsm.dsm_loss(exact_score, None, x0, jax.random.key(0), sigmas)
  np.testing.assert_allclose(losses, 0.0, atol=1e-6)
  sums, counts = dsm.per_level_sums(jnp.arange(6.0), levels, 3)
  assert float(counts.sum()) == 6 and float(sums.sum()) == 15.0
  zero = lambda p, x, y: jnp.zeros_like(x)
  np.testing.assert_allclose(dsm.fixed_level_loss(zero, None, x0, jax.random.key(1), sigmas),
                             8.0, rtol=0.5)  # ½‖ε‖² with D=16.


def test_data_of_the_wrong_shape_is_a_clear_error(tmp_path):
  config = _tiny_config(tmp_path)
  images = score_training.load_images(config.data, (28, 28, 1))
  assert images.dtype == np.uint8 and images.shape == (64, 28, 28, 1)
  with pytest.raises(ValueError, match=r"expects images of shape \(32, 32, 3\)"):
    score_training.load_images(config.data, (32, 32, 3))


@pytest.mark.slow
def test_training_on_mnist_lowers_the_loss_at_every_level(tmp_path, shared_data):
  """A small model (ngf 16), 400 steps of batch 32 on real MNIST, on the CPU."""
  config = train_ncsn_mnist.get_config()
  config.data.path = str(shared_data / "mnist")
  config.model.ngf = 16
  config.training.batch_size = 32
  config.num_steps = 400
  config.log_every = 50
  config.checkpoint_every = 400
  config.sampling.update(every=400, num_samples=16, steps_per_level=20)
  workdir = str(tmp_path / "mnist")
  _, initial = score_training.init_state(config)
  final = score_training.train_and_evaluate(config, workdir)
  test = ml_collections.ConfigDict(dict(config.data, split="test", num_examples=256))
  x = dsm.dequantize(jnp.asarray(score_training.load_images(test, (28, 28, 1))),
                     jax.random.key(1))
  graphdef, _ = ncsn.abstract_params(score_training.model_config(config))
  score_fn = ncsn.make_score_fn(graphdef)
  sigmas = score_training.sigmas_of(config)
  evaluate = jax.jit(lambda p: dsm.fixed_level_loss(score_fn, p, x, jax.random.key(2), sigmas))
  before, after = np.asarray(evaluate(initial["params"])), np.asarray(evaluate(final["params"]))
  print("held-out DSM loss per level, before:", np.round(before, 1).tolist())
  print("held-out DSM loss per level, after: ", np.round(after, 1).tolist())
  assert np.all(after < before), (before, after)
  assert os.path.exists(os.path.join(workdir, "samples", "step_0000400.png"))
