"""Defaults shared by every separation config (each config file starts from these).

Fields:
  seed: noise for mixture n derives from fold_in(key(seed), n).
  num_mixtures, batch_size: total mixtures and the global chunk size (across devices).
  distributed: call jax.distributed.initialize() (multi-host).
  max_device_memory_gb: refuse chunks that need more (0: the device's own limit).
  prior: one prior shared by all components, or priors: one per component.
  schedule: σ ladder (sigmas, or sigma_max/sigma_min/num_levels), steps_per_level (T),
    step_lr (δ), likelihood_weight (w), gammas (likelihood std; empty = σ).
  mixing: kind ('sum', 'grayscale', 'clipped_sum') and alphas.
  sampler: init ('uniform'|'normal'), init_range, clamp (empty = none), num_samples,
    hard_constraint, snapshots, unroll.
  data, mixture: where mixtures come from (see basis_jax/mixtures.py).
  output: grid_rows.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 1234
  config.num_mixtures = 50
  config.batch_size = 50
  config.distributed = False
  config.max_device_memory_gb = 0.0

  config.prior = ml_collections.ConfigDict({"name": "ncsn", "weights": ""})
  config.priors = ()

  config.schedule = ml_collections.ConfigDict({
      "sigma_max": 1.0, "sigma_min": 0.01, "num_levels": 10, "sigmas": (),
      "steps_per_level": 100, "step_lr": 3e-5, "likelihood_weight": 1.0, "gammas": (),
  })
  config.mixing = ml_collections.ConfigDict({"kind": "sum", "alphas": (1.0, 1.0)})
  config.sampler = ml_collections.ConfigDict({
      "init": "uniform", "init_range": (0.0, 1.0), "clamp": (), "num_samples": 1,
      "hard_constraint": False, "snapshots": False, "unroll": 1,
  })
  config.data = ml_collections.ConfigDict({"source": "mnist", "path": "", "split": "test"})
  config.mixture = ml_collections.ConfigDict({"kind": "agnostic", "num_components": 2,
                                              "seed": 0})
  config.output = ml_collections.ConfigDict({"grid_rows": 8})
  return config
