"""Defaults shared by every separation config (each config file starts from these).

Fields:
  seed: noise for mixture n derives from fold_in(key(seed), n).
  num_mixtures, batch_size: total mixtures and the global chunk size (across devices).
  distributed: enabled → jax.distributed.initialize() (multi-host); coordinator_address,
    num_processes, process_id where the cluster is not auto-detected.
  max_device_memory_gb: refuse chunks that need more (0: the device's own limit).
  prior: one prior shared by all components, or priors: one per component.
    prior.allow_random_weights: a network prior with no weights (and none shipped) is
    refused unless this is True (benchmarks, tests): random weights give meaningless
    separations that look like results.
  schedule: σ ladder (sigmas, or sigma_max/sigma_min/num_levels), steps_per_level (T),
    step_lr (δ), likelihood_weight (w), gammas (likelihood std; empty = σ).
  mixing: kind ('sum', 'grayscale', 'clipped_sum') and alphas.
  sampler: init ('uniform'|'normal'; empty: the prior's own start, `Prior.default_init`:
    U(0, 1), Glow N(½, 1)), init_range (uniform), init_mean (normal), clamp (empty = none), num_samples,
    hard_constraint, snapshots, unroll, divergence_bound (|x| above it at the end of a
    level counts as diverged, checked before the clamp), prune_after and survivors (after
    that many levels keep the `survivors` best of the num_samples chains of each mixture,
    ranked by `select`; 0: every chain runs to the end).
  select: 'likelihood' | 'residual' | 'none': which of the num_samples samples of a mixture
    becomes its components (basis_jax/selection.py); the others are kept beside it
    (separations.npz `samples`, `sample_scores`, `chosen`). 'none' keeps all S as components.
  data, mixture: where mixtures come from (`basis_jax.data.data_config_defaults` and
    `basis_jax.mixtures.mixture_config_defaults` document every field).
  output: grid_rows.
"""

import ml_collections

from basis_jax import data, mixtures


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 1234
  config.num_mixtures = 50
  config.batch_size = 50
  config.distributed = ml_collections.ConfigDict({
      "enabled": False, "coordinator_address": "", "num_processes": 0, "process_id": -1})
  config.max_device_memory_gb = 0.0

  config.prior = ml_collections.ConfigDict({"name": "ncsn", "weights": "",
                                            "allow_random_weights": False})
  config.priors = ()

  config.schedule = ml_collections.ConfigDict({
      "sigma_max": 1.0, "sigma_min": 0.01, "num_levels": 10, "sigmas": (),
      "steps_per_level": 100, "step_lr": 3e-5, "likelihood_weight": 1.0, "gammas": (),
  })
  config.mixing = ml_collections.ConfigDict({"kind": "sum", "alphas": (1.0, 1.0)})
  config.sampler = ml_collections.ConfigDict({
      "init": "", "init_range": (0.0, 1.0), "init_mean": 0.0, "clamp": (), "num_samples": 1,
      "hard_constraint": False, "snapshots": False, "unroll": 1, "divergence_bound": 1e3,
      "prune_after": 0, "survivors": 1,
  })
  config.select = "none"
  config.data = data.data_config_defaults()
  config.mixture = mixtures.mixture_config_defaults()
  config.output = ml_collections.ConfigDict({"grid_rows": 8})
  return config
