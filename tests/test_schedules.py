"""The σ ladder and the step sizes of the paper and the released runners."""

import ml_collections
import numpy as np
import pytest

from basis_jax.sampling import schedules


def test_reference_ladder_and_step_sizes():
  sigmas = schedules.geometric_sigmas(1.0, 0.01, 10)
  np.testing.assert_allclose(sigmas, np.exp(np.linspace(np.log(1.0), np.log(0.01), 10)))
  sched = schedules.Schedule(sigmas, 100, 3e-5, likelihood_weight=2.0)
  np.testing.assert_allclose(sched.step_sizes()[-1], 3e-5, rtol=1e-6)
  np.testing.assert_allclose(sched.step_sizes()[0], 3e-5 * 1e4, rtol=1e-6)
  np.testing.assert_allclose(sched.likelihood_variances(), np.square(sigmas), rtol=1e-6)
  assert sched.num_steps == 1000 and sched.likelihood_weight == 2.0


def test_from_config_explicit_list_and_gammas():
  cfg = ml_collections.ConfigDict({"sigmas": (0.5, 0.1), "steps_per_level": 3, "step_lr": 2e-5,
                                   "likelihood_weight": 1.5, "gammas": (0.2, 0.05)})
  sched = schedules.from_config(cfg)
  assert sched.sigmas == (0.5, 0.1) and sched.likelihood_weight == 1.5
  np.testing.assert_allclose(sched.likelihood_variances(), [0.04, 0.0025], rtol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    (dict(sigmas=(0.1, 0.5), steps_per_level=1, step_lr=1e-5), "strictly decreasing"),
    (dict(sigmas=(0.5, 0.5), steps_per_level=1, step_lr=1e-5), "strictly decreasing"),
    (dict(sigmas=(), steps_per_level=1, step_lr=1e-5), "empty"),
    (dict(sigmas=(1.0, -0.1), steps_per_level=1, step_lr=1e-5), "positive"),
    (dict(sigmas=(1.0, 0.1), steps_per_level=0, step_lr=1e-5), "T\\) must be an integer >= 1"),
    (dict(sigmas=(1.0, 0.1), steps_per_level=2, step_lr=0.0), "step_lr"),
    (dict(sigmas=(1.0, 0.1), steps_per_level=2, step_lr=1e-5, gammas=(1.0,)), "gammas has 1"),
])
def test_bad_schedules(kwargs, message):
  with pytest.raises(ValueError, match=message):
    schedules.Schedule(**kwargs)
