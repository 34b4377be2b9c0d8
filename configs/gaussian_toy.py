"""BASIS with analytic Gaussian priors: watch the sampler work without any weights.

Each component has its own independent-pixel Gaussian prior (different smooth means and
per-pixel variances), so the score is exact at every σ and the posterior is known.

  python -m experiments.separate --config=configs/gaussian_toy.py --workdir=/tmp/toy
"""

import ml_collections

from configs import base_separation


def _toy_prior(component, mean):
  return ml_collections.ConfigDict({
      "name": "gaussian_toy", "image_shape": (16, 16, 1), "mean": mean, "std": 0.12,
      "component": component, "seed": 0})


def get_config():
  config = base_separation.get_config()
  config.num_mixtures = 16
  config.batch_size = 16
  config.prior = None  # One prior per component instead (config.priors).
  config.priors = (_toy_prior(0, 0.35), _toy_prior(1, 0.55))
  config.schedule.steps_per_level = 50
  config.data.source = "prior"  # Ground truth drawn from the priors (Prior.sample).
  return config
