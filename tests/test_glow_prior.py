"""Glow as a BASIS prior (per-σ stacked parameters in the sampler's scan) and best of S."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from tests.sampling_options import sampler_options
from basis_jax import errors

from basis_jax.sampling import mixing, sampler, schedules, selection
from basis_jax.priors import gaussian, glow
from basis_jax import priors as priors_lib
from configs import mnist_glow, score_unet_common

CONFIG = glow.GlowConfig(image_shape=(8, 8, 1), levels=2, depth=1, width=8)
SCHEDULE = schedules.Schedule(schedules.geometric_sigmas(1.0, 0.1, 3), 4, 3e-5,
                              likelihood_weight=4.0)


def _stacked_file(tmp_path, sigmas=SCHEDULE.sigmas):
  """Per-σ Glows that differ (different seeds), saved as the fine-tuning run saves them."""
  states = [nnx.split(glow.create(CONFIG, seed=i))[1] for i in range(len(sigmas))]
  path = str(tmp_path / "glow_sigmas.npz")
  glow.save_weights(path, CONFIG, glow.stack_states(states), sigmas=sigmas)
  return path, states


def _prior_config(weights=""):
  section = mnist_glow.glow_prior(weights=weights)
  section.update(glow.config_to_json(CONFIG))
  return section


def test_prior_scores_use_the_level_parameters(tmp_path):
  path, states = _stacked_file(tmp_path)
  prior = priors_lib.load(_prior_config(path), SCHEDULE)
  assert prior.num_levels == 3 and prior.image_shape == (8, 8, 1)
  x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (2, 8, 8, 1)), jnp.float32)
  graphdef = nnx.split(glow.Glow(CONFIG))[0]
  reference = jax.jit(glow.make_score_fn(graphdef))

  @jax.jit
  def score(params, level):
    return prior.score_fn(prior.select_level(params, level), x, level)

  for level in range(3):
    np.testing.assert_allclose(score(prior.params, jnp.int32(level)),
                               reference(states[level], x - 0.5), rtol=1e-4, atol=1e-5)


def test_sigma_ladder_mismatch_is_refused(tmp_path):
  path, _ = _stacked_file(tmp_path, sigmas=(1.0, 0.5, 0.01))
  with pytest.raises(errors.ConfigError, match="trained for σ = "):
    priors_lib.load(_prior_config(path), SCHEDULE)


def test_glow_basis_end_to_end_with_best_of_s(tmp_path):
  path, _ = _stacked_file(tmp_path)
  prior = priors_lib.load(_prior_config(path), SCHEDULE)
  op = mixing.Sum((0.5, 0.5))
  truth = np.random.default_rng(1).uniform(0, 1, (3, 2, 8, 8, 1)).astype(np.float32)
  mixtures = np.asarray(jax.vmap(op)(truth))
  separate = sampler.make_separator(
      prior.score_fn, op, SCHEDULE, component_shape=prior.image_shape,
      select_level=prior.select_level,
      options=sampler_options(init="normal", num_samples=4))
  out = jax.jit(separate)(prior.params, mixtures, jax.random.key(0))
  samples = np.asarray(out["components"])
  assert samples.shape == (3, 4, 2, 8, 8, 1) and np.isfinite(samples).all()
  best, index, scores = selection.best_of_s(samples, [prior, prior])
  assert best.shape == (3, 2, 8, 8, 1) and scores.shape == (3, 4)
  np.testing.assert_array_equal(best, samples[np.arange(3), index])
  np.testing.assert_array_equal(index, scores.argmax(1))


def test_best_of_s_picks_the_most_likely_sample():
  sigmas = (1.0, 0.1)
  means, stds = gaussian.toy_moments((4, 4, 1), 0, 0, 0.5, 0.1)
  prior = gaussian.make_prior(means, stds**2, sigmas)
  rng = np.random.default_rng(0)
  samples = means + 0.3 * rng.standard_normal((5, 6, 2, 4, 4, 1)).astype(np.float32)
  samples[2, 4] = means  # The prior's mode, for both components.
  best, index, scores = selection.best_of_s(samples, [prior, prior], level=1,
                                                         chunk_size=7)
  assert index[2] == 4
  np.testing.assert_array_equal(best[2], samples[2, 4])
  # The score is the components' summed log-density at the level asked.
  level_params = prior.select_level(prior.params, 1)
  per_image = prior.log_density_fn(level_params, samples[0].reshape(12, 4, 4, 1), 1)
  np.testing.assert_allclose(scores[0], np.asarray(per_image).reshape(6, 2).sum(1), rtol=1e-5)
  # Per-component priors give the same answer when they are the same prior.
  _, index_k, scores_k = selection.best_of_s(
      samples, [prior, dataclasses.replace(prior)], level=1)
  np.testing.assert_array_equal(index_k, index)
  np.testing.assert_allclose(scores_k, scores, rtol=1e-5)


def test_best_of_s_errors():
  toy = gaussian.make_prior(np.zeros((2, 2, 1)), np.ones((2, 2, 1)), (1.0,))
  with pytest.raises(errors.UserError, match=r"\[N, S, k, H, W, C\]"):
    selection.best_of_s(np.zeros((2, 3, 4, 4, 1)), [toy, toy])
  with pytest.raises(errors.UserError, match="3 priors for 2 components"):
    selection.best_of_s(np.zeros((1, 2, 2, 2, 2, 1)), [toy] * 3)
  toy = gaussian.make_prior(np.zeros((2, 2, 1)), np.ones((2, 2, 1)), (1.0,))
  no_density = toy.__class__(**{**toy.__dict__, "log_density_fn": None})
  with pytest.raises(errors.UserError, match="needs a prior log-density"):
    selection.best_of_s(np.zeros((1, 2, 1, 2, 2, 1)), [no_density])
  # A broken sample (NaN) ranks last, with a warning, instead of stopping the choice.
  toy = gaussian.make_prior(np.zeros((2, 2, 1)), np.ones((2, 2, 1)), (1.0,))
  samples = np.zeros((2, 3, 1, 2, 2, 1), np.float32)
  samples[:, 1] += 0.5
  samples[0, 0, 0, 0, 0, 0] = np.nan
  _, index, scores = selection.best_of_s(samples, [toy])
  assert np.isnan(scores[0, 0]) and list(index) == [2, 0]  # Row 1: the first of the tie.


def test_separation_configs():
  from basis_jax.sampling import separation  # pylint: disable=import-outside-toplevel
  from configs import cifar_glow, lsun_glow, mnist_glow  # pylint: disable=import-outside-toplevel
  config = mnist_glow.get_config("small")
  with pytest.raises(ValueError, match="has no weights"):  # Random weights only on request.
    separation.build_job(config)
  config.prior.allow_random_weights = True
  job = separation.build_job(config)
  assert job.priors[0].name == "glow" and job.priors[0].image_shape == (32, 32, 3)
  assert job.priors[0].data_shape == (28, 28, 1)  # The prior pads MNIST itself.
  assert job.options.init == "normal" and job.schedule.likelihood_weight == 4.0
  # The reference's soft data term, except for the shipped model, whose step size and hard
  # constraint were chosen on held-out mixtures (docs/glow.md).
  assert not job.options.hard_constraint
  assert not mnist_glow.get_config("paper").sampler.hard_constraint
  shipped = mnist_glow.get_config("class_split")
  assert shipped.sampler.hard_constraint and shipped.schedule.step_lr == 2e-5
  config.sampler.init = ""  # The prior's own start: N(½, 1), as the config spells out.
  options = separation.build_job(config).options
  assert (options.init, options.init_mean) == ("normal", 0.5)
  # Without a per-σ file, one model serves every level: not copied L times, not sliced.
  assert job.priors[0].select_level(job.params, 3) is job.params
  random_model = glow.Glow(glow.GlowConfig.from_config(config.prior), seed=0)
  assert [a.shape for a in jax.tree.leaves(job.params)] == \
      [a.shape for a in jax.tree.leaves(nnx.state(random_model))]
  assert cifar_glow.get_config().mixture.kind == "class_split"
  lsun = lsun_glow.get_config()
  lsun.church_weights, lsun.bedroom_weights = "church.npz", "bedroom.npz"
  assert [p.weights for p in lsun.priors] == ["church.npz", "bedroom.npz"]
  assert all(tuple(p.image_shape) == (64, 64, 3) and p.levels == 4 for p in lsun.priors)


def test_architecture_fields_that_clash_with_the_file_are_refused(tmp_path):
  path, _ = _stacked_file(tmp_path)
  config = _prior_config(path)
  config.width = 16  # The file's Glow has width 8.
  with pytest.raises(errors.ConfigError, match=r"width=16 \(file: 8\)"):
    priors_lib.load(config, SCHEDULE)
  bare = ml_collections.ConfigDict({  # The fields a loader reads; architecture: the file's.
      "name": "glow", "weights": path, "dataset": "", "seed": 0, "allow_random_weights": False,
      "data_shape": None})
  assert priors_lib.load(bare, SCHEDULE).num_levels == 3


def test_one_clean_model_for_every_sigma_is_announced_and_level_free(tmp_path, caplog):
  path = str(tmp_path / "clean.npz")
  glow.save_weights(path, CONFIG, nnx.split(glow.create(CONFIG))[1])
  caplog.set_level("WARNING")
  prior = priors_lib.load(_prior_config(path), SCHEDULE)
  assert any("one clean model" in r.message and "serves all 3 noise levels" in r.message
             for r in caplog.records)
  assert prior.num_levels is None  # Not the schedule's count, which no check could fail.
  stacked, _ = _stacked_file(tmp_path, sigmas=(1.0, 0.1))
  with pytest.raises(errors.ConfigError, match="trained for σ = "):  # 2 levels vs the schedule's 3.
    priors_lib.load(_prior_config(stacked), SCHEDULE)


def test_glow32_data_space_pads_tiles_and_crops_back(tmp_path):
  """MNIST as BASIS's Glow takes it (glow32), owned by the prior: 28×28×1 in 32×32×3."""
  from tests.test_data import write_mnist  # pylint: disable=import-outside-toplevel
  from basis_jax.files import data  # pylint: disable=import-outside-toplevel
  write_mnist(str(tmp_path))
  space = glow.data_space(glow.GlowConfig(), (28, 28, 1))
  images = space.to_prior(data.load({'source': 'mnist', 'path': str(tmp_path),
                                      'verify_checksums': False}).images)
  assert images.shape == (6, 32, 32, 3)
  assert np.all(images[:, :2] == 0) and np.all(images[:, :, -2:] == 0)
  np.testing.assert_array_equal(images[..., 0], images[..., 2])
  x = np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)
  np.testing.assert_allclose(space.from_prior(space.to_prior(x)), x, atol=1e-6)
  assert space == glow.data_space(glow.GlowConfig(), [28, 28, 1])  # Compared by value.
  assert glow.data_space(glow.GlowConfig(), None).is_identity
  with pytest.raises(ValueError, match="cannot be padded"):
    glow.data_space(glow.GlowConfig(), (27, 28, 1))
  with pytest.raises(ValueError, match="Expected images"):
    space.to_prior(np.zeros((2, 32, 32, 3)))


def test_best_of_s_scores_a_sigma_conditioned_prior_at_the_schedules_last_sigma():
  """A σ-conditioned prior (num_levels None) is scored at σ_L, not at level 0 (σ_max)."""
  from basis_jax.priors import score_unet  # pylint: disable=import-outside-toplevel
  schedule = schedules.Schedule(sigmas=(1.0, 0.1, 0.01), steps_per_level=1, step_lr=1e-5)
  prior = score_unet.load(score_unet_common.unet_prior("cifar10"), schedule)  # Shipped.
  assert prior.num_levels is None
  sigmas = jnp.asarray(schedule.sigmas)
  asked = lambda params, x, level: jnp.sum(x, axis=(1, 2, 3)) * 0 - sigmas[level]
  prior = dataclasses.replace(prior, log_density_fn=asked)  # Reports the σ it is asked at.
  samples = np.random.default_rng(0).uniform(size=(2, 3, 2, 32, 32, 3)).astype(np.float32)
  _, _, scores = selection.best_of_s(samples, [prior, prior],
                                                  num_levels=schedule.num_levels)
  np.testing.assert_allclose(scores, -2 * 0.01, rtol=1e-6)  # Two components at σ_L each.
  with pytest.raises(errors.UserError, match="num_levels"):
    selection.best_of_s(samples, [prior, prior])


@pytest.mark.parametrize("builder,missing", [
    ("ncsn", "use_ema"), ("ncsn", "dataset"), ("score_unet", "likelihood"),
    ("score_unet", "dataset"), ("glow", "data_shape"), ("glow", "seed")])
def test_a_prior_section_missing_a_field_is_refused_by_name_before_loading(builder, missing):
  from configs import mnist_ncsn  # pylint: disable=import-outside-toplevel
  section = {"ncsn": lambda: mnist_ncsn.ncsn_prior("mnist"),
             "score_unet": lambda: score_unet_common.unet_prior("mnist"),
             "glow": mnist_glow.glow_prior}[builder]()
  del section[missing]
  with pytest.raises(errors.ConfigError, match=f"no field\\(s\\) '{missing}'") as refused:
    priors_lib.load(section, SCHEDULE)
  assert "which sets every field" in refused.value.hint
