"""The compiled BASIS sampler: posterior correctness, determinism, compilation, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.sampling_options import sampler_options
from basis_jax.sampling import mixing, sampler, schedules

from basis_jax.errors import ConfigError
from basis_jax.files import sharding
from basis_jax.priors import gaussian

SHAPE = (4, 4, 1)


def _toy(k, sigmas, mean_step=0.2, std=0.15):
  moments = [gaussian.toy_moments(SHAPE, j, 0, 0.3 + mean_step * j, std) for j in range(k)]
  priors = [gaussian.make_prior(m, s**2, sigmas) for m, s in moments]
  return priors, np.stack([m for m, _ in moments]), np.stack([s**2 for _, s in moments])


def _posterior_samples(k, alphas, sched, num_samples, truth_seed, key):
  """k toy priors, one mixture of draws from them, and `num_samples` posterior samples of it:
  (priors, means, variances, mixture, the sampler's outputs for that mixture)."""
  priors, means, variances = _toy(k, sched.sigmas)
  truth = np.stack([gaussian.sample(p, 1, seed=truth_seed + j)[0] for j, p in enumerate(priors)])
  op = mixing.Sum(alphas)
  m = np.asarray(op(jnp.asarray(truth)))
  separate = sampler.make_separator([p.score_fn for p in priors], op, sched,
                                    component_shape=SHAPE,
                                    options=sampler_options(num_samples=num_samples))
  out = jax.jit(separate)([p.params for p in priors], m[None], jax.random.key(key))
  return priors, means, variances, m, out


@pytest.mark.parametrize("alphas", [(1.0, 1.0), (1.0, 1.0, 1.0), (0.7, 1.3)])
def test_samples_match_analytic_gaussian_posterior(alphas):
  """With Gaussian priors, BASIS at the last level samples a known Gaussian posterior.

  The target at level L is ∝ p_σL(x) N(m; g(x), γ_L²/w): prior variances v + σ_L², noise
  variance γ_L²/w. From S = 512 independent samples of one mixture we compare per-pixel
  means (z-scores against the sampling error √(var/S)) and variances (ratio to the exact
  posterior variance). Tolerances: RMS z-score < 1.5 (expected 1), max |z| < 4.5 over
  ≤ 48 pixels×components, variance ratio within [0.75, 1.35] per pixel (the relative sampling
  error of a variance from 512 draws is ~6 %, plus the O(η) Langevin discretisation bias) and
  within [0.9, 1.15] on average.
  """
  k = len(alphas)
  sched = schedules.Schedule(schedules.geometric_sigmas(1.0, 0.01, 10), 100, 3e-5)
  num_samples = 512
  priors, means, variances, m, out = _posterior_samples(k, alphas, sched, num_samples,
                                                        truth_seed=10, key=0)
  samples = np.asarray(out["components"][0])
  assert samples.shape == (num_samples, k) + SHAPE
  sigma_l2 = sched.sigmas[-1]**2
  post_mean, post_var = gaussian.analytic_posterior(means, variances + sigma_l2, alphas, m,
                                                    sigma_l2 / sched.likelihood_weight)
  z = (samples.mean(0) - post_mean) / np.sqrt(post_var / num_samples)
  ratio = samples.var(0) / post_var
  assert np.sqrt(np.mean(z**2)) < 1.5, z
  assert np.abs(z).max() < 4.5, z
  assert 0.75 < ratio.min() and ratio.max() < 1.35, ratio
  assert 0.9 < ratio.mean() < 1.15, ratio.mean()
  assert (out["diverged_level"] == -1).all()


def test_chain_with_weight_2_and_explicit_gamma_has_the_discrete_langevin_law():
  """One level (σ = 0.1), w = 2, γ = 0.6, α = (0.7, 1.3), a long chain of T = 150 steps.

  Derivation. Per pixel the target is π(x) ∝ N(x; μ, P) · N(m; αᵀx, γ²/w) with
  P = diag(v_j + σ²): a Gaussian with precision A = P⁻¹ + (w/γ²) α αᵀ and mean
  x* = A⁻¹ (P⁻¹ μ + (w/γ²) α m). The sampler's step x' = x + η ∇log π(x) + √(2η) ε
  (η = δ·σ²/σ_L² = δ for one level) is linear: x' − x* = (I − ηA)(x − x*) + √(2η) ε. Its
  stationary law is N(x*, C) with C = (I − ηA) C (I − ηA) + 2η I; C commutes with A, so
  C = 2η (2ηA − η²A²)⁻¹ = (A (I − ηA/2))⁻¹ — exact for the discretised chain, not the
  continuous-time posterior A⁻¹. With δ = 0.01 the two laws differ by more than 10 % in
  every variance (asserted), far beyond the sampling error, so the test tells them apart.
  The start is forgotten: ‖I − ηA‖^T ≤ (1 − 0.01·16)^150 ≈ 1e-12 (the prior variances are ≤ 0.06).
  Tolerances (S = 4096 chains): per-entry z-score of the mean < 4.5; each variance and
  covariance within 5 standard errors (SE of a variance ≈ √(2/S)·C_jj ≈ 2.2 %); the mean
  variance ratio within 2 %.
  """
  sigma, w, gamma, delta, alphas = 0.1, 2.0, 0.6, 0.01, (0.7, 1.3)
  sched = schedules.Schedule((sigma,), 150, delta, likelihood_weight=w, gammas=(gamma,))
  num_samples = 4096
  priors, means, variances, m, out = _posterior_samples(2, alphas, sched, num_samples,
                                                        truth_seed=20, key=3)
  samples = np.asarray(out["components"][0], np.float64).reshape(num_samples, 2, -1)
  eta = delta  # η = δ·σ²/σ_L² with one level.
  a = np.asarray(alphas)[:, None]
  prior_var = (variances + sigma**2).reshape(2, -1)
  mu, mix = means.reshape(2, -1), m.reshape(-1)
  exact_var, continuous_var = [], []
  for pixel in range(mu.shape[1]):
    precision = np.diag(1 / prior_var[:, pixel]) + (w / gamma**2) * (a @ a.T)
    x_star = np.linalg.solve(precision, mu[:, pixel] / prior_var[:, pixel]
                             + (w / gamma**2) * a[:, 0] * mix[pixel])
    cov = np.linalg.inv(precision @ (np.eye(2) - eta * precision / 2))
    x = samples[:, :, pixel]
    z = (x.mean(0) - x_star) / np.sqrt(np.diag(cov) / num_samples)
    assert np.abs(z).max() < 4.5, (pixel, z)
    sample_cov = np.cov(x, rowvar=False)
    # SE of a sample covariance entry: √((C_ii C_jj + C_ij²) / S).
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / num_samples)
    assert (np.abs(sample_cov - cov) < 5 * se).all(), (pixel, sample_cov, cov)
    exact_var.append(np.diag(cov))
    continuous_var.append(np.diag(np.linalg.inv(precision)))
  exact_var, continuous_var = np.stack(exact_var, 1), np.stack(continuous_var, 1)
  assert (exact_var / continuous_var > 1.1).all()  # The two laws really differ.
  ratio = samples.var(0) / exact_var
  assert abs(ratio.mean() - 1) < 0.02, ratio.mean()


def _small_setup(num_samples=1, **option_kwargs):
  sched = schedules.Schedule(schedules.geometric_sigmas(1.0, 0.01, 3), 5, 3e-5)
  priors, _, _ = _toy(2, sched.sigmas)
  op = mixing.Sum((1.0, 1.0))
  options = sampler_options(num_samples=num_samples, **option_kwargs)
  separate = sampler.make_separator([p.score_fn for p in priors], op, sched,
                                    component_shape=SHAPE, options=options)
  params = [p.params for p in priors]
  truth = np.stack([np.stack([gaussian.sample(p, 1, seed=[n, j])[0]
                              for j, p in enumerate(priors)]) for n in range(16)])
  mixtures = np.asarray(jax.vmap(op)(truth))
  return separate, params, mixtures, sched


def test_same_mixture_index_same_result_for_any_batch_and_device_count():
  separate, params, mixtures, _ = _small_setup()
  key = jax.random.key(7)
  assert jax.device_count() == 8, "conftest sets 8 fake CPU devices"
  one_device = sharding.ShardedBatchFn(separate, sharding.make_mesh(jax.devices()[:1]))
  eight_devices = sharding.ShardedBatchFn(separate, sharding.make_mesh())
  full_1 = one_device(params, mixtures, key)["components"]
  full_8 = eight_devices(params, mixtures, key)["components"]
  alone = one_device(params, mixtures[5:6], key, indices=[5])["components"]
  odd_batch = eight_devices(params, mixtures[3:10], key, indices=np.arange(3, 10))["components"]
  assert full_1.shape == (16, 2) + SHAPE
  # Noise depends only on (seed, index). XLA may vectorise a loop over 16 rows differently
  # from one over 1 or 2 rows (FMA contraction), so values agree to float rounding, not bits.
  np.testing.assert_allclose(full_1, full_8, rtol=0, atol=1e-6)
  np.testing.assert_allclose(alone[0], full_1[5], rtol=0, atol=1e-6)
  np.testing.assert_allclose(odd_batch, full_1[3:10], rtol=0, atol=1e-6)  # 7 rows padded to 8.
  # A different index (same mixture) gets different noise.
  other = one_device(params, mixtures[5:6], key, indices=[6])["components"]
  assert not np.allclose(other[0], full_1[5])


def test_compiles_once_per_shape():
  separate, params, mixtures, _ = _small_setup()
  counted = chex.assert_max_traces(separate, n=1)
  run = sharding.ShardedBatchFn(counted, sharding.make_mesh())
  run(params, mixtures, jax.random.key(0))
  run(params, mixtures + 0.01, jax.random.key(1), indices=np.arange(16) + 100)
  run(params, mixtures[:13], jax.random.key(1))  # Pads to 16: the same compiled shape.
  with pytest.raises(AssertionError):
    run(params, mixtures[:3], jax.random.key(1))  # Pads to 8: a new shape retraces.


def test_map_chunks_is_the_whole_batch_call_traced_once():
  x, y = np.arange(22.0).reshape(11, 2), np.arange(11.0)
  fn = jax.jit(chex.assert_max_traces(lambda a, b: {"sum": a.sum(1) + b, "pair": (a, -b)},
                                      n=1))
  out = sharding.map_chunks(fn, [x, y], 4)  # 4 + 4 + 3 rows, the last padded to 4.
  np.testing.assert_array_equal(out["sum"], x.sum(1) + y)
  np.testing.assert_array_equal(out["pair"][0], x)
  np.testing.assert_array_equal(out["pair"][1], -y)
  with pytest.raises(ValueError, match="one length"):
    sharding.map_chunks(fn, [x, y[:5]], 4)
  with pytest.raises(ValueError, match="at least one row"):
    sharding.map_chunks(fn, [x[:0], y[:0]], 4)


def test_samples_axis_snapshots_clamp_and_progress():
  levels = []
  separate, params, mixtures, sched = _small_setup(num_samples=3, snapshots=True, clamp=(0., 1.))
  out = jax.jit(separate)(params, mixtures[:4], jax.random.key(0))
  assert out["components"].shape == (4, 3, 2) + SHAPE
  assert out["snapshots"].shape == (4, 3, sched.num_levels, 2) + SHAPE
  assert out["score_norm"].shape == (4, 3, sched.num_levels)
  assert float(out["components"].min()) >= 0.0 and float(out["components"].max()) <= 1.0
  np.testing.assert_allclose(np.clip(out["snapshots"][:, :, -1], 0, 1), out["components"])
  # Samples of one mixture differ from each other.
  assert not np.allclose(out["components"][:, 0], out["components"][:, 1])

  priors, _, _ = _toy(2, sched.sigmas)
  with_progress = sampler.make_separator(
      [p.score_fn for p in priors], mixing.Sum((1.0, 1.0)), sched, component_shape=SHAPE,
      progress=lambda level: levels.append(int(level)), options=sampler_options())
  jax.block_until_ready(jax.jit(with_progress)(params, mixtures[:2], jax.random.key(0)))
  jax.effects_barrier()
  assert sorted(set(levels)) == list(range(sched.num_levels))


def test_hard_constraint_satisfies_mixture():
  separate, params, mixtures, _ = _small_setup(hard_constraint=True)
  out = jax.jit(separate)(params, mixtures[:4], jax.random.key(0))
  np.testing.assert_allclose(out["components"].sum(1), mixtures[:4], atol=1e-5)
  assert float(out["residual_norm"].max()) < 1e-4


def test_nonlinear_clipped_sum_runs_and_fits_the_mixture():
  sched = schedules.Schedule(schedules.geometric_sigmas(1.0, 0.01, 4), 20, 3e-5)
  priors, _, _ = _toy(2, sched.sigmas, mean_step=0.3)
  op = mixing.Generic(mixing.clipped_sum, num_components=2)
  truth = np.stack([np.stack([gaussian.sample(p, 1, seed=[n, j])[0] for j, p in enumerate(priors)])
                    for n in range(4)])
  mixtures = np.asarray(jax.vmap(op)(truth))
  assert (mixtures == 1.0).any(), "the test mixtures should saturate somewhere"
  separate = sampler.make_separator([p.score_fn for p in priors], op, sched,
                                    component_shape=SHAPE, options=sampler_options())
  out = jax.jit(separate)([p.params for p in priors], mixtures, jax.random.key(0))
  fitted = np.asarray(jax.vmap(op)(out["components"]))
  start = np.asarray(jax.vmap(op)(jax.random.uniform(jax.random.key(1), truth.shape)))
  # A hard clip has zero gradient once a pixel saturates, so a few pixels can stay stuck at
  # 1; everywhere else the data term pulls the clipped sum onto the mixture.
  error = np.abs(fitted - mixtures)
  assert np.median(error) < 0.01 and error.mean() < 0.05
  assert error.mean() < 0.25 * np.abs(start - mixtures).mean()
  with pytest.raises(ValueError, match="hard_constraint needs a linear"):
    sampler.make_separator([p.score_fn for p in priors], op, sched, component_shape=SHAPE,
                           options=sampler_options(hard_constraint=True))


def test_divergence_is_reported_with_the_level_where_it_began():
  sigmas = schedules.geometric_sigmas(1.0, 0.01, 6)
  # γ collapses at level 3 only: η·w/γ² ≫ 2 there, so the state explodes at that level.
  gammas = list(sigmas)
  gammas[3] = 1e-6
  sched = schedules.Schedule(sigmas, 20, 3e-5, gammas=gammas)
  priors, _, _ = _toy(2, sched.sigmas)
  separate = sampler.make_separator([p.score_fn for p in priors], mixing.Sum((1.0, 1.0)), sched,
                                    component_shape=SHAPE, options=sampler_options())
  mixtures = np.full((3,) + SHAPE, 0.8, np.float32)
  out = jax.jit(separate)([p.params for p in priors], mixtures, jax.random.key(0))
  np.testing.assert_array_equal(out["diverged_level"], [3, 3, 3])
  with pytest.raises(sampler.SamplingDivergedError, match="level 3"):
    sampler.check_diverged(out, np.array([10, 11, 12]), sched)


def test_a_finite_explosion_is_flagged_although_the_clamp_would_hide_it():
  """A score pushing x away from ½ grows it ×1.1 per step to ~1e4 (finite) by the end;
  the clamp to [0, 1] would write that as an image with no error."""
  sched = schedules.Schedule((1.0,), 100, 0.1, likelihood_weight=0.0)
  separate = sampler.make_separator(lambda params, x, level: x - 0.5, mixing.Sum((1.0, 1.0)),
                                    sched, component_shape=SHAPE,
                                    options=sampler_options(clamp=(0.0, 1.0)))
  out = jax.jit(separate)(None, np.full((2,) + SHAPE, 0.8, np.float32), jax.random.key(0))
  components = np.asarray(out["components"])
  assert np.isfinite(components).all() and components.min() >= 0 and components.max() <= 1
  np.testing.assert_array_equal(out["diverged_level"], [0, 0])
  with pytest.raises(sampler.SamplingDivergedError, match="divergence_bound"):
    sampler.check_diverged(out, np.array([0, 1]), sched)


def test_bad_input_is_refused_before_compilation():
  separate, _, mixtures, sched = _small_setup()
  shape = separate.mixture_shape
  with pytest.raises(ValueError, match="rank 4"):
    sampler.validate_mixtures(mixtures[0], shape)
  with pytest.raises(ValueError, match="does not match"):
    sampler.validate_mixtures(np.zeros((2, 8, 8, 1)), shape)
  bad = mixtures.copy()
  bad[3, 0, 0, 0] = np.nan
  with pytest.raises(ValueError, match="NaN or inf .* position 3"):
    sampler.validate_mixtures(bad, shape)
  bad[3, 0, 0, 0] = np.inf
  with pytest.raises(ValueError, match="NaN or inf"):
    sampler.validate_mixtures(bad, shape)
  priors, _, _ = _toy(2, sched.sigmas)
  with pytest.raises(ValueError, match="num_components=3 but the mixing operator has 2"):
    sampler.make_separator(priors[0].score_fn, mixing.Sum((1.0, 1.0)), sched,
                           component_shape=SHAPE, num_components=3, options=sampler_options())
  with pytest.raises(ValueError, match="score_fn has 3 entries but there are 2"):
    sampler.make_separator([priors[0].score_fn] * 3, mixing.Sum((1.0, 1.0)), sched,
                           component_shape=SHAPE, options=sampler_options())
  with pytest.raises(ValueError, match="Unknown init"):
    sampler_options(init="zeros")


def test_residual_rank_is_the_residual_the_sampler_reports():
  from basis_jax.sampling import selection  # pylint: disable=g-import-not-at-top
  separate, params, mixtures, _ = _small_setup(num_samples=4)
  out = jax.jit(separate)(params, mixtures[:3], jax.random.key(0))
  components = np.asarray(out["components"])  # [3, 4, k, ...], every sample kept.
  rank = selection.make_rank_fn("residual", [], mixing.Sum((1.0, 1.0)), num_levels=1)
  scores = rank(None, components.reshape((12,) + components.shape[2:]),
                np.repeat(mixtures[:3], 4, axis=0))
  np.testing.assert_allclose(-np.asarray(scores).reshape(3, 4), out["residual_norm"],
                             rtol=1e-4, atol=1e-6)
  residual = np.abs(components.sum(2) - mixtures[:3, None]).reshape(3, 4, -1)
  np.testing.assert_allclose(np.sqrt((residual**2).sum(-1)), out["residual_norm"], rtol=1e-4)


def test_prior_sampler_samples_a_gaussian():
  """Unconditional annealed Langevin (the separator's loop with no data term)."""
  mean, std = 0.5, 0.1
  sigmas = tuple(np.geomspace(0.5, 0.01, 5))

  def gaussian_score(params, x, level):
    del params
    return -(x - mean) / (std**2 + jnp.asarray(sigmas)[level] ** 2)

  schedule = schedules.Schedule(sigmas, steps_per_level=50, step_lr=2e-4)
  sample = sampler.make_prior_sampler(gaussian_score, schedule, (4, 4, 1))
  x = jax.jit(sample, static_argnums=2)(None, jax.random.key(0), 256)
  assert x.shape == (256, 4, 4, 1)
  assert abs(float(x.mean()) - mean) < 0.02 and abs(float(x.std()) - std) < 0.02


@pytest.mark.parametrize("hard_constraint,step_size", [(True, 0.02), (False, 0.01)])
def test_metropolis_adjusted_langevin_removes_the_step_size_bias(hard_constraint, step_size):
  """MALA (`sampler.metropolis`) samples the exact posterior where plain Langevin is biased.

  One level (σ = 0.1) with a step η (0.02 hard, 0.01 soft) that large for the toy's
  stiffest pixels (η·precision up to about 1.3 and 0.75): unadjusted Langevin's stationary
  variance is then 1/(1 − η·λ/2) times the true one, up to 2.8× and 1.6×. With the
  Metropolis-Hastings test the chain's law is the target: p_σ(x₁)p_σ(x₂) on x₁ + x₂ = m
  (hard constraint), or times N(m; x₁ + x₂, γ²/w) with γ = 0.3 (soft). S = 512 chains of
  T = 300 steps; tolerances as in the analytic-posterior test above (variance ratio within
  [0.9, 1.15] on average, [0.7, 1.4] per pixel), and the unadjusted chain's mean ratio
  above 1.2 (it fails them).
  """
  alphas = (1.0, 1.0)
  sched = schedules.Schedule((0.1,), 300, step_size, gammas=None if hard_constraint else (0.3,))
  priors, means, variances = _toy(2, sched.sigmas)
  truth = np.stack([gaussian.sample(p, 1, seed=30 + j)[0] for j, p in enumerate(priors)])
  op = mixing.Sum(alphas)
  m = np.asarray(op(jnp.asarray(truth)))
  noise_var = 0.0 if hard_constraint else sched.gammas[-1]**2 / sched.likelihood_weight
  post_mean, post_var = gaussian.analytic_posterior(means, variances + sched.sigmas[-1]**2,
                                                    alphas, m, noise_var)
  if hard_constraint:
    post_var = post_var[:1]  # x₂ = m − x₁: one component carries the law.
  ratios = {}
  for metropolis in (False, True):
    separate = sampler.make_separator(
        [p.score_fn for p in priors], op, sched, component_shape=SHAPE,
        log_density_fn=[p.log_density_fn for p in priors],
        options=sampler_options(num_samples=512, hard_constraint=hard_constraint,
                                metropolis=metropolis))
    out = jax.jit(separate)([p.params for p in priors], m[None], jax.random.key(3))
    samples = np.asarray(out["components"][0], np.float64)[:, :len(post_var)]
    ratios[metropolis] = samples.var(0) / post_var
    if metropolis:
      acceptance = float(np.mean(out["acceptance"]))
      assert 0.3 < acceptance < 0.95, acceptance
      z = (samples.mean(0) - post_mean[:len(post_var)]) / np.sqrt(post_var / 512)
      assert np.sqrt(np.mean(z**2)) < 1.5, z
      assert np.abs(z).max() < 4.5, z
  assert ratios[False].mean() > 1.2, ratios[False].mean()
  assert 0.9 < ratios[True].mean() < 1.15, ratios[True].mean()
  assert 0.7 < ratios[True].min() and ratios[True].max() < 1.4, ratios[True]


def test_metropolis_needs_a_log_density():
  priors, _, _ = _toy(2, (0.1,))
  with pytest.raises(ConfigError, match="log-density"):
    sampler.make_separator([p.score_fn for p in priors], mixing.Sum((1.0, 1.0)),
                           schedules.Schedule((0.1,), 5, 0.01), component_shape=SHAPE,
                           options=sampler_options(metropolis=True))
