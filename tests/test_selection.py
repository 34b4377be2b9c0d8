"""Best-of-S inside the separation: the chosen sample, early pruning, the run's outputs and
refusals (basis_jax/sampling/selection.py, sampler rank_fn / prune_after)."""

import dataclasses
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.sampling_options import sampler_options
from basis_jax import errors

from basis_jax.sampling import mixing, sampler, schedules, selection, separation
from basis_jax.priors import gaussian
from tests.test_separation_runs import REPO, _env, _separate_cmd, _toy_config

SIGMAS = (0.5, 0.2, 0.1, 0.05)
SHAPE = (4, 4, 1)


def _toy(num_samples=4, prune_after=0, survivors=1, progress=None, criterion="likelihood"):
  """A shared Gaussian prior over two 4×4 components; a separator with selection."""
  rng = np.random.default_rng(0)
  prior = gaussian.make_prior(rng.uniform(0.2, 0.8, SHAPE), np.full(SHAPE, 0.05), SIGMAS)
  schedule = schedules.Schedule(sigmas=SIGMAS, steps_per_level=5, step_lr=2e-3,
                                likelihood_weight=1.0)
  op = mixing.Sum((1.0, 1.0))
  rank = selection.make_rank_fn(criterion, [prior, prior], op, len(SIGMAS))
  options = sampler_options(num_samples=num_samples, clamp=(0.0, 1.0),
                                   hard_constraint=True, prune_after=prune_after,
                                   survivors=survivors)
  separate = sampler.make_separator(prior.score_fn, op, schedule, component_shape=SHAPE,
                                    options=options, rank_fn=rank, progress=progress)
  mixtures = jnp.asarray(rng.uniform(0.4, 1.6, (3,) + SHAPE), jnp.float32)
  return prior, separate, mixtures


def test_the_chosen_sample_is_the_most_likely_one():
  prior, separate, mixtures = _toy()
  out = jax.jit(separate)(prior.params, mixtures, jax.random.key(0))
  samples = np.asarray(out["samples"])
  assert samples.shape == (3, 4, 2) + SHAPE and out["components"].shape == (3, 2) + SHAPE
  # Scores recomputed outside the sampler: Σ_j log p_σL(x_j) of each (clamped) sample.
  flat = samples.reshape((-1,) + SHAPE)
  expected = np.asarray(prior.log_density_fn(prior.params, flat, len(SIGMAS) - 1))
  expected = expected.reshape(3, 4, 2).sum(-1)
  np.testing.assert_allclose(out["sample_scores"], expected, rtol=1e-5)
  np.testing.assert_array_equal(out["chosen"], expected.argmax(1))
  np.testing.assert_array_equal(out["components"], samples[np.arange(3), expected.argmax(1)])
  # Samples are those of the same run without selection (noise per mixture and sample).
  plain = sampler.make_separator(prior.score_fn, mixing.Sum((1.0, 1.0)), separate.schedule,
                                 component_shape=SHAPE, options=dataclasses.replace(
                                     sampler_options(num_samples=4, clamp=(0.0, 1.0),
                                                            hard_constraint=True)))
  np.testing.assert_allclose(jax.jit(plain)(prior.params, mixtures, jax.random.key(0))
                             ["components"], samples, atol=1e-6)


def test_a_mixtures_choice_does_not_depend_on_its_batch():
  prior, separate, mixtures = _toy()
  fn = jax.jit(separate)
  whole = fn(prior.params, mixtures, jax.random.key(0), jnp.arange(3, dtype=jnp.int32))
  alone = fn(prior.params, mixtures[2:], jax.random.key(0), jnp.array([2], jnp.int32))
  assert int(alone["chosen"][0]) == int(whole["chosen"][2])
  np.testing.assert_allclose(alone["sample_scores"][0], whole["sample_scores"][2], rtol=1e-5)


def test_pruned_survivors_finish_exactly_as_their_chains_would():
  prior, full, mixtures = _toy(num_samples=4)
  _, pruned, _ = _toy(num_samples=4, prune_after=2, survivors=2)
  every = jax.jit(full)(prior.params, mixtures, jax.random.key(0))
  few = jax.jit(pruned)(prior.params, mixtures, jax.random.key(0))
  index = np.asarray(few["sample_index"])
  assert index.shape == (3, 2) and few["samples"].shape == (3, 2, 2) + SHAPE
  assert few["prune_scores"].shape == (3, 4) and few["score_norm"].shape == (3, 2, len(SIGMAS))
  # The survivors are the two best chains by the early scores, in ascending order.
  best = np.sort(np.argsort(-np.asarray(few["prune_scores"]), axis=1)[:, :2], axis=1)
  np.testing.assert_array_equal(index, best)
  rows = np.arange(3)[:, None]
  np.testing.assert_allclose(few["samples"], np.asarray(every["samples"])[rows, index],
                             atol=1e-5)
  np.testing.assert_allclose(few["score_norm"], np.asarray(every["score_norm"])[rows, index],
                             rtol=1e-5)


def test_progress_reports_a_level_only_after_its_work():
  events = []

  def record_score(level):
    events.append(("score", int(level)))

  prior, _, mixtures = _toy(num_samples=1, criterion="none")
  base_score = prior.score_fn

  def traced_score(params, x, level):
    jax.debug.callback(record_score, level)
    return base_score(params, x, level)

  schedule = schedules.Schedule(sigmas=SIGMAS, steps_per_level=3, step_lr=2e-3)
  separate = sampler.make_separator(
      traced_score, mixing.Sum((1.0, 1.0)), schedule, component_shape=SHAPE,
      progress=lambda level: events.append(("done", int(level))), options=sampler_options())
  jax.block_until_ready(jax.jit(separate)(prior.params, mixtures, jax.random.key(0)))
  done = [i for i, (kind, _) in enumerate(events) if kind == "done"]
  assert [events[i][1] for i in done] == list(range(len(SIGMAS)))
  for i in done:  # Every score call of that level came before its "done".
    level = events[i][1]
    assert all(position < i for position, event in enumerate(events)
               if event == ("score", level))


@pytest.mark.parametrize("options, match", [
    (dict(num_samples=0), "num_samples must be an integer >= 1"),
    (dict(num_samples=4, prune_after=2, survivors=4), "1 <= survivors < num_samples"),
    (dict(num_samples=4, prune_after=2, survivors=0), "1 <= survivors < num_samples"),
    (dict(num_samples=4, prune_after=-1), "prune_after must be an integer >= 0"),
])
def test_bad_sampling_settings_are_refused(options, match):
  with pytest.raises(errors.ConfigError, match=match):
    sampler_options(**options)


def test_pruning_needs_a_criterion_and_a_level_left():
  prior, _, _ = _toy()
  schedule = schedules.Schedule(sigmas=SIGMAS, steps_per_level=2, step_lr=1e-3)
  options = sampler_options(num_samples=4, prune_after=2, survivors=1)
  with pytest.raises(errors.ConfigError, match="select='none'"):
    sampler.make_separator(prior.score_fn, mixing.Sum((1.0, 1.0)), schedule,
                           component_shape=SHAPE, options=options)
  late = dataclasses.replace(options, prune_after=len(SIGMAS))
  with pytest.raises(errors.ConfigError, match="leaves no level"):
    sampler.make_separator(prior.score_fn, mixing.Sum((1.0, 1.0)), schedule,
                           component_shape=SHAPE, options=late,
                           rank_fn=lambda p, x, m: jnp.zeros(x.shape[0]))


def test_unknown_criterion_and_a_prior_without_likelihood_are_refused():
  prior, _, _ = _toy()
  with pytest.raises(errors.ConfigError, match="config.select must be one of"):
    selection.make_rank_fn("psnr", [prior], mixing.Sum((1.0,)), 4)
  no_density = dataclasses.replace(prior, name="ncsn", log_density_fn=None)
  with pytest.raises(errors.ConfigError, match="the ncsn prior has none"):
    selection.make_rank_fn("likelihood", [no_density], mixing.Sum((1.0,)), 4)


def test_a_run_keeps_every_sample_and_reports_what_the_choice_is_worth(tmp_path):
  config = _toy_config(**{"sampler.num_samples": 3, "select": "likelihood"})
  summary = separation.run(config, str(tmp_path))
  with np.load(tmp_path / "separations.npz") as out:
    assert out["components"].shape == (12, 2, 16, 16, 1)
    assert out["samples"].shape == (12, 3, 2, 16, 16, 1)
    assert out["sample_scores"].shape == (12, 3) and out["chosen"].shape == (12,)
    np.testing.assert_array_equal(out["components"],
                                  out["samples"][np.arange(12), out["chosen"]])
  # The oracle is the best single sample: never below the chosen one or the mean sample.
  assert summary["psnr_oracle"]["mean"] >= summary["psnr"]["mean"] - 1e-9
  assert summary["psnr_oracle"]["mean"] >= summary["psnr_single_sample"]["mean"]
  assert summary["select"] == "likelihood"
  assert json.loads((tmp_path / "metrics.json").read_text())["psnr_posterior_mean"]["n"] == 12


@pytest.mark.parametrize("change, key", [
    ({"sampler.num_samples": 2}, "sampler.num_samples"),
    ({"select": "residual"}, "select"),
])
def test_a_resumed_run_with_other_samples_or_selection_is_refused(tmp_path, change, key):
  base = {"sampler.num_samples": 3, "select": "likelihood", "num_mixtures": 5}
  separation.run(_toy_config(**base), str(tmp_path))
  with pytest.raises(errors.ConfigError, match=f"these keys changed: {key}"):
    separation.run(_toy_config(**{**base, **change}), str(tmp_path), allow_config_change=True)


def test_a_killed_best_of_s_run_resumes_byte_identically(tmp_path):
  flags = ("--config.num_mixtures=12", "--config.batch_size=4", "--config.sampler.num_samples=3",
           "--config.select=likelihood", "--config.sampler.prune_after=2",
           "--config.sampler.survivors=2", "--config.schedule.num_levels=4",
           "--config.schedule.steps_per_level=10")
  reference, killed = tmp_path / "reference", tmp_path / "killed"
  subprocess.run(_separate_cmd(reference, *flags), cwd=REPO, env=_env(), check=True,
                 capture_output=True)
  killed_cmd = [sys.executable, str(REPO / "tests" / "separate_killed_after.py"), "2",
                *_separate_cmd(killed, *flags)[3:]]
  assert subprocess.run(killed_cmd, cwd=REPO, env=_env(), capture_output=True).returncode < 0
  subprocess.run(_separate_cmd(killed, *flags), cwd=REPO, env=_env(), check=True,
                 capture_output=True)
  assert ((killed / "separations.npz").read_bytes() ==
          (reference / "separations.npz").read_bytes())


def test_the_evaluator_reports_chosen_single_oracle_and_mean(tmp_path):
  from basis_jax.evaluation import report  # pylint: disable=import-outside-toplevel
  config = _toy_config(**{"sampler.num_samples": 3, "select": "likelihood", "num_mixtures": 6})
  summary = separation.run(config, str(tmp_path))
  results = report.evaluate(str(tmp_path), inception="never")
  assert results["select"] == "likelihood" and results["selected_from"] == 3
  # One producer: the run's metrics.json and eval.json agree key for key.
  for key in ("psnr", "average_baseline_psnr", "psnr_single_sample", "psnr_oracle",
              "psnr_posterior_mean", "fraction_mixtures_above_average", "selected_from"):
    assert results[key] == pytest.approx(summary[key]), key
  assert results["psnr_oracle"]["mean"] >= max(results["psnr"]["mean"],
                                               results["psnr_single_sample"]["mean"])
  assert "oracle: best of the S by PSNR" in (tmp_path / "eval.md").read_text()


def test_best_of_s_after_the_fact_is_the_in_run_choice(tmp_path):
  overrides = {"sampler.num_samples": 3, "num_mixtures": 6}
  in_run = separation.run(_toy_config(**overrides, select="likelihood"), str(tmp_path / "a"))
  config = _toy_config(**overrides)  # select='none': every sample kept, none chosen.
  separation.run(config, str(tmp_path / "b"))
  after = separation.best_of_s(config, str(tmp_path / "b"))
  with np.load(tmp_path / "a" / "separations.npz") as a, \
       np.load(tmp_path / "b" / "best_of_s.npz") as b:
    np.testing.assert_array_equal(b["index"], a["chosen"])
    np.testing.assert_array_equal(b["components"], a["components"])
  for key in ("psnr", "psnr_single_sample", "psnr_oracle", "psnr_posterior_mean",
              "average_baseline_psnr", "selected_from"):
    assert after[key] == pytest.approx(in_run[key]), key  # One producer, one schema.
  with pytest.raises(errors.MissingFileError, match="separations.npz not found"):
    separation.best_of_s(config, str(tmp_path / "c"))
  separation.run(_toy_config(num_mixtures=6), str(tmp_path / "c"))
  with pytest.raises(errors.ConfigError, match="one sample per mixture"):
    separation.best_of_s(config, str(tmp_path / "c"))


def test_the_posterior_mean_aligns_swapped_samples():
  rng = np.random.default_rng(0)
  a, b = rng.uniform(size=(2, 1, 4, 4, 1)).astype(np.float32)
  first = np.stack([a, b], axis=1)  # [1, 2, 4, 4, 1]
  swapped = first[:, ::-1]
  samples = np.stack([first, swapped], axis=1)  # [1, S=2, k=2, ...]
  np.testing.assert_allclose(selection.aligned_mean(samples, first), first, atol=1e-6)


def test_the_frontier_scores_a_scheme_as_the_sampler_would_choose():
  from studies import best_of_s_schemes as frontier  # pylint: disable=import-outside-toplevel
  per_sample = np.array([[20.0, 30.0, 25.0, 10.0]])  # One mixture, 4 chains.
  final = np.array([[1.0, 0.0, 3.0, 9.0]])  # The likelihood at the end prefers chain 3.
  early = {2: np.array([[5.0, 4.0, 0.0, 1.0]])}  # After level 2: chains 0 and 1 lead.
  pick = lambda scheme: {k: float(v[0]) for k, v in frontier.evaluate_scheme(
      scheme, per_sample, final, early).items()}
  # Two chains: the first two; the likelihood picks chain 0.
  assert pick(frontier.Scheme(50, 2)) == {"chosen": 20.0, "single_sample": 25.0, "oracle": 30.0}
  assert pick(frontier.Scheme(50, 4))["chosen"] == 10.0  # Chain 3, the most likely.
  # Pruned after level 2 to chains {0, 1}: then the likelihood keeps 0; the oracle is 30.
  assert pick(frontier.Scheme(50, 4, 2, 2)) == {"chosen": 20.0, "single_sample": 21.25,
                                                "oracle": 30.0}
  # Cost in network evaluations: 4 chains × 2 levels × 50 + 2 × 8 × 50, Tweedie + K per
  # pruned chain, K per finished one.
  assert frontier.Scheme(50, 4, 2, 2).cost(10, 64) == 400 + 800 + 4 * 65 + 2 * 64
