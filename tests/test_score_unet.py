"""The compact continuous-σ score network, its training and its bad-input errors."""

import json
import logging
import os
import shutil
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from basis_jax.files import checkpoint_io

from basis_jax.training import dsm, optim, score_training
from configs import base_training

from basis_jax.sampling import schedules
from basis_jax.errors import ConfigError
from basis_jax.priors import score_unet
from configs import score_unet_common, train_score_unet_mnist
from tests.test_train_ncsn import _leaves, _write_idx

TINY = (8, 8, 8)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """One uninterrupted 4-step run and one stopped after 2 steps, shared by the tests."""
  root = tmp_path_factory.mktemp("score_unet_runs")
  straight = score_training.train_and_evaluate(_tiny_config(root), str(root / "straight"))
  half = score_training.train_and_evaluate(_tiny_config(root, num_steps=2), str(root / "half"))
  return root, straight, half


def _tiny_config(tmp_path, **overrides):
  """widths 8/8/8 on 80 random 'MNIST' images, 16 of them held out."""
  config = train_score_unet_mnist.get_config()
  data = tmp_path / "data"
  if not data.exists():
    data.mkdir()
    rng = np.random.default_rng(0)
    _write_idx(data / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (80, 28, 28), np.uint8))
    _write_idx(data / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, (80,), np.uint8))
  config.data.path, config.data.verify_checksums = str(data), False
  config.model.update(widths=TINY, embed_dim=8)
  config.training.batch_size = 8
  config.optim.warmup_steps = 2
  config.num_steps = 4
  config.log_every = 1
  config.checkpoint_every = 2
  config.heldout.update(num_images=16, eval_images=8)
  config.heldout_every = 2
  config.sampling.every = 0
  for key, value in overrides.items():
    config[key] = value
  return config


def test_score_is_the_network_output_over_sigma_and_sigma_broadcasts():
  model = score_unet.build(score_unet.ScoreUNetConfig.mnist(widths=TINY, embed_dim=8))
  # Give the zero-initialised last conv weights so the output is not trivially zero.
  model.end_conv.kernel.value = jax.random.normal(jax.random.key(1), model.end_conv.kernel.shape)
  graphdef, params = nnx.split(model)
  score_fn = score_unet.make_score_fn(graphdef)
  x = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
  per_item = score_fn(params, x, jnp.full((3,), 0.2))
  np.testing.assert_allclose(score_fn(params, x, 0.2), per_item, rtol=1e-6)
  assert float(jnp.abs(per_item).mean()) > 0
  # Same input, σ changes the embedding and c_in, so the score is not a plain rescale.
  other = score_fn(params, x, 0.4)
  assert not np.allclose(other * 0.4, per_item * 0.2, rtol=1e-3)
  with pytest.raises(ValueError, match="one σ per batch item"):
    model(x, jnp.ones((2,)))
  with pytest.raises(ValueError, match=r"Expected x of shape"):
    model(jnp.zeros((1, 32, 32, 3)), jnp.ones((1,)))
  with pytest.raises(ConfigError, match="not divisible"):
    score_unet.ScoreUNetConfig.mnist(widths=(8, 8, 8, 8))  # 28 → 14 → 7 → 3.5


def test_upsample_conv_is_the_conv_of_the_nearest_upsampling_and_so_is_its_gradient():
  """The four-phase form computes conv(2× nearest resize of x): values and gradients (for
  the input and the kernel) to float32 rounding, odd sizes included."""
  layer = nnx.Conv(5, 7, (3, 3), padding="SAME", rngs=nnx.Rngs(3))
  layer.bias[...] = jnp.linspace(-1.0, 1.0, 7)

  def reference(x, kernel):  # Written out: resize_then_conv's own definition.
    b, h, w, c = x.shape
    up = jax.image.resize(x, (b, 2 * h, 2 * w, c), "nearest")
    out = jax.lax.conv_general_dilated(up, kernel, (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return out + layer.bias[...]

  def phases(x, kernel):  # The layer with `kernel` swapped in, traceable for jax.grad.
    return score_unet.upsample_conv(
        types.SimpleNamespace(kernel=kernel, bias=layer.bias[...], dtype=None), x)

  x = jax.random.normal(jax.random.key(0), (2, 7, 6, 5))
  kernel = layer.kernel[...]
  expected = reference(x, kernel)
  np.testing.assert_allclose(score_unet.resize_then_conv(layer, x), expected, rtol=1e-6,
                             atol=1e-6)
  out = phases(x, kernel)
  assert out.shape == (2, 14, 12, 7)
  np.testing.assert_allclose(out, expected, rtol=0, atol=2e-6 * float(jnp.abs(expected).max()))
  weights = jax.random.normal(jax.random.key(1), expected.shape)
  loss = lambda fn: lambda x, k: jnp.sum(weights * fn(x, k))
  for got, want in zip(jax.grad(loss(phases), (0, 1))(x, kernel),
                       jax.grad(loss(reference), (0, 1))(x, kernel)):
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * float(jnp.abs(want).max()))


def test_log_uniform_noise_covers_its_range_and_bands():
  noise = dsm.LogUniformNoise(0.005, 17.0, num_bands=10)
  cond, sigma, bands = noise.sample(jax.random.key(0), 20000)
  sigma, bands = np.asarray(sigma), np.asarray(bands)
  np.testing.assert_array_equal(np.asarray(cond), sigma)
  assert sigma.min() >= 0.005 and sigma.max() <= 17.0
  u = (np.log(sigma) - np.log(0.005)) / (np.log(17.0) - np.log(0.005))
  assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.003  # Uniform in log σ.
  edges = np.exp(np.linspace(np.log(17.0), np.log(0.005), 11))
  for b in range(10):  # Band b holds σ between its edges, largest σ first.
    inside = sigma[bands == b]
    assert inside.size > 1500 and inside.max() <= edges[b] * 1.0001
    assert inside.min() >= edges[b + 1] * 0.9999
  conds, centres = noise.eval_points()
  assert np.all((centres < edges[:-1]) & (centres > edges[1:]))


def test_training_resumes_exactly_from_orbax_and_from_the_compact_state(runs, tmp_path):
  root, straight, half = runs
  assert int(half["step"]) == 2
  # The compact file is a whole training state: a new workdir on another machine resumes.
  state_file = str(root / "half" / "weights.npz")
  assert os.path.getsize(state_file) < 1e6
  moved = score_training.train_and_evaluate(_tiny_config(root, init_weights=state_file),
                                        str(tmp_path / "moved"))
  shutil.copytree(root / "half", tmp_path / "half")
  resumed = score_training.train_and_evaluate(_tiny_config(root), str(tmp_path / "half"))
  for run in (moved, resumed):
    assert int(run["step"]) == 4
    for a, b in zip(_leaves(straight), _leaves(run)):
      np.testing.assert_array_equal(a, b)
  records = [json.loads(line) for line in open(root / "straight" / "metrics.jsonl")]
  assert [r["step"] for r in records] == [1, 2, 3, 4]
  assert len(records[1]["heldout_loss"]) == len(records[1]["heldout_loss_ema"]) == 10
  assert "heldout_loss" not in records[0]  # Only every heldout_every steps.


def test_a_kill_between_checkpoints_does_not_duplicate_metrics(runs, tmp_path):
  root, _, _ = runs
  work = tmp_path / "killed"
  shutil.copytree(root / "straight", work)
  # As if killed after logging steps 3 and 4 but before the step-4 checkpoint landed.
  shutil.rmtree(work / "checkpoints" / "4")
  score_training.train_and_evaluate(_tiny_config(root), str(work))
  lines = [json.loads(line) for line in open(work / "metrics.jsonl")]
  assert [r["step"] for r in lines] == [1, 2, 3, 4]
  straight = [json.loads(line) for line in open(root / "straight" / "metrics.jsonl")]
  assert [r["loss"] for r in lines] == [r["loss"] for r in straight]


def test_resume_with_a_changed_config_is_refused_naming_the_keys(runs, tmp_path):
  root, _, _ = runs
  shutil.copytree(root / "half", tmp_path / "run")
  changed = _tiny_config(root)
  changed.optim.lr = 5e-4
  changed.sigmas.sigma_min = 0.01
  with pytest.raises(ConfigError, match=r"optim\.lr, sigmas\.sigma_min"):
    score_training.train_and_evaluate(changed, str(tmp_path / "run"))
  # Keys that do not change the weights (num_steps, logging) may change.
  longer = _tiny_config(root, num_steps=3, log_every=3, checkpoint_every=3)
  assert int(score_training.train_and_evaluate(longer, str(tmp_path / "run"))["step"]) == 3


def test_the_cool_down_schedule_and_a_cool_down_branched_from_a_saved_state(runs, tmp_path):
  root, constant, _ = runs
  settings = lambda **o: optim.settings_from_config(
      base_training.optim(lr=1e-3, grad_clip=1.0, warmup_steps=4, **o))
  plain, cooled = (optim.learning_rate(settings()),
                   optim.learning_rate(settings(decay_start=10, decay_steps=20,
                                                     final_lr_factor=0.1)))
  for count, want in [(0, 2.5e-4), (2, 6.25e-4), (4, 1e-3), (10, 1e-3), (20, 5.5e-4),
                      (30, 1e-4), (90, 1e-4)]:
    np.testing.assert_allclose(float(cooled(count)), want, rtol=1e-6)
  for count in (0, 2, 3, 10, 30):  # Without a cool-down: the warm-up schedule as before.
    assert float(plain(count)) == float(optax.linear_schedule(2.5e-4, 1e-3, 4)(count))
  with pytest.raises(ConfigError, match="inside the warm-up"):
    settings(decay_start=2, decay_steps=5)
  with pytest.raises(ConfigError, match="final_lr_factor=1.5"):
    settings(decay_start=5, decay_steps=5, final_lr_factor=1.5)

  # A cool-down over steps 2-4 branched from the step-2 training state of the constant-lr
  # run: the same as training 4 steps with that schedule from the start, bit for bit, and
  # different from the constant-lr run.
  cool = dict(decay_start=2, decay_steps=2, final_lr_factor=0.25)
  straight = _tiny_config(root)
  straight.optim.update(cool)
  whole = score_training.train_and_evaluate(straight, str(tmp_path / "whole"))
  branched = _tiny_config(root, init_weights=str(root / "half" / "weights.npz"))
  branched.optim.update(cool)
  branch = score_training.train_and_evaluate(branched, str(tmp_path / "branch"))
  for a, b in zip(_leaves(whole), _leaves(branch)):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(_leaves(whole["params"])[0], _leaves(constant["params"])[0])
  records = [json.loads(line) for line in open(tmp_path / "branch" / "metrics.jsonl")]
  np.testing.assert_allclose([r["lr"] for r in records], [1e-3, 1e-3 * 0.625], rtol=1e-6)


def test_a_non_finite_loss_stops_training_before_the_bad_state_is_saved(tmp_path, monkeypatch):
  real = dsm.dsm_loss

  def poisoned(*args, **kwargs):
    losses, bands = real(*args, **kwargs)
    return losses * jnp.nan, bands

  monkeypatch.setattr(dsm, "dsm_loss", poisoned)
  score_training._train_step.cache_clear()
  try:
    with pytest.raises(score_training.NonFiniteLossError, match="non-finite between steps 0 and 1"):
      score_training.train_and_evaluate(_tiny_config(tmp_path), str(tmp_path / "nan"))
  finally:
    score_training._train_step.cache_clear()
  assert not os.path.exists(tmp_path / "nan" / "weights.npz")


def _prior_config(weights, **overrides):
  section = score_unet_common.unet_prior("mnist")
  section.update({"weights": weights, **overrides})
  return section


def test_prior_queries_level_i_at_sigma_i_and_bad_files_are_clear_errors(runs, tmp_path, caplog):
  root, state, _ = runs
  config = _tiny_config(root)
  weights = str(root / "straight" / "weights.npz")
  schedule = schedules.Schedule(sigmas=(1.0, 0.1, 0.01), steps_per_level=1, step_lr=1e-5)
  prior = score_unet.load(_prior_config(weights), schedule)
  for a, b in zip(_leaves(prior.params), _leaves(state["ema"])):
    np.testing.assert_array_equal(a, b)
  graphdef, _ = score_unet.abstract_params(score_training.model_config(config))
  x = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))
  direct = score_unet.make_score_fn(graphdef)(state["ema"], x, 0.1)
  np.testing.assert_allclose(prior.score_fn(prior.params, x, jnp.int32(1)), direct, rtol=1e-6)

  # A ladder outside the trained range [0.005, 17] is refused, naming the range and the σ;
  # allowed, it warns.
  outside = schedules.Schedule(sigmas=(50.0, 1.0, 0.001), steps_per_level=1, step_lr=1e-5)
  with pytest.raises(ConfigError, match=r"trained for σ in \[0.005, 17\].*σ = 50, 0.001"):
    score_unet.load(_prior_config(weights), outside)
  with caplog.at_level(logging.WARNING):
    score_unet.load(_prior_config(weights, allow_sigma_extrapolation=True), outside)
  assert "trained for σ in [0.005, 17]" in caplog.text and "extrapolations" in caplog.text

  # Weights of another architecture (an NCSN training file).
  ncsn_file = str(tmp_path / "ncsn.npz")
  checkpoint_io.save_params(ncsn_file, {"params": {"w": np.zeros(3)}},
                            {"architecture": "ncsn_cond_refinenet_dilated", "config": {}})
  with pytest.raises(checkpoint_io.CheckpointError, match="'ncsn_cond_refinenet_dilated' network"):
    score_unet.load(_prior_config(ncsn_file), schedule)
  # Weights for another image size.
  meta = checkpoint_io.read_metadata(weights)
  other = str(tmp_path / "cifar.npz")
  checkpoint_io.save_params(other, {"params": {"w": np.zeros(3)}},
                            dict(meta, config=dict(meta["config"], image_size=32, channels=3)))
  with pytest.raises(checkpoint_io.CheckpointError, match=r"image_size=28 \(file: 32\)"):
    score_unet.load(_prior_config(other), schedule)
  # A truncated training-state file, as a resume source and as weights.
  truncated = str(tmp_path / "truncated.npz")
  with open(weights, "rb") as f:
    blob = f.read()
  with open(truncated, "wb") as f:
    f.write(blob[: len(blob) // 2])
  with pytest.raises(checkpoint_io.CheckpointError, match="truncated.npz"):
    score_training.init_state(_tiny_config(root, init_weights=truncated))
  with pytest.raises(checkpoint_io.CheckpointError, match="truncated.npz"):
    score_unet.load(_prior_config(truncated), schedule)
  # A resume after the architecture changed.
  wider = _tiny_config(root, init_weights=weights)
  wider.model.widths = (16, 16, 16)
  with pytest.raises(checkpoint_io.CheckpointError, match="cannot be loaded"):
    score_training.init_state(wider)
  # No weights given: the shipped file, with its digest recorded for resumed runs.
  shipped = score_unet.load(_prior_config(""), schedule)
  assert shipped.weights_digest is not None and shipped.image_shape == (28, 28, 1)
