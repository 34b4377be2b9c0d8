"""Defaults shared by every separation config (each config file starts from these).

FIELD_HELP below gives one line of meaning per field; `experiments.separate --help
--config=FILE` prints every field of FILE with its value and that line. Details:
basis_jax/sampling/sampler.py (sampler fields), basis_jax/sampling/selection.py (select),
basis_jax.files.data.data_config_defaults and
basis_jax.files.mixtures.mixture_config_defaults (data, mixture), the prior modules under
basis_jax/priors/ (prior fields).
"""

import ml_collections

from basis_jax.files import data, mixtures

# Field -> one line of meaning. `prior.x` also covers `priors[i].x` (one prior per component).
FIELD_HELP = {
    "seed": "noise of mixture n derives from fold_in(key(seed), n), whatever the batch or devices",
    "num_mixtures": "how many mixtures to separate (start small: the run's time grows with it)",
    "batch_size": "mixtures per chunk (global, across devices); each chunk is saved as it finishes",
    "distributed.enabled": "multi-host: every process calls jax.distributed.initialize()",
    "distributed.coordinator_address": "HOST:PORT of process 0 (empty: the cluster says)",
    "distributed.num_processes": "number of processes (0: the cluster says)",
    "distributed.process_id": "this process's number (-1: the cluster says)",
    "max_device_memory_gb": "refuse chunks needing more device memory (0: the device's limit)",
    "prior": "one prior for all components (None: config.priors has one each)",
    "priors": "one prior per component (empty: config.prior serves all)",
    "prior.name": "which prior: score_unet | ncsn | glow | gaussian_toy",
    "prior.weights": "weights file (.npz); empty: the weights shipped in the package, if any",
    "prior.dataset": "which shipped weights an empty `weights` means (mnist, cifar10)",
    "prior.allow_random_weights": "random weights when none exist (plumbing checks only)",
    "prior.seed": "initialisation seed of random weights (and of the toy prior's moments)",
    "prior.allow_sigma_extrapolation": "use sigma outside the trained range (warns instead of "
                                       "refusing)",
    "prior.use_ema": "use the EMA weights of a training file (False: its raw weights)",
    "prior.dtype": "compute dtype of the network (None: float32; 'bfloat16')",
    "prior.ngf": "NCSN width (filters of the first block; 64 MNIST, 128 CIFAR-10)",
    "prior.likelihood.form": "-log p bound: 'data' (training loss) | 'marginal' (p at sigma_min)",
    "prior.likelihood.num_noise": "noise draws per sigma in the likelihood bound",
    "prior.likelihood.num_sigmas": "sigma levels in the likelihood bound (stratified in log sigma)",
    "prior.likelihood.seed": "noise seed of the likelihood bound",
    "prior.likelihood.sigma_max": "largest sigma of the likelihood bound",
    "prior.likelihood.sigma_min": "smallest sigma of the likelihood bound",
    "prior.image_shape": "(H, W, C) the prior works in",
    "prior.data_shape": "dataset (H, W, C) if trained on padded images (None: image_shape)",
    "prior.levels": "Glow levels (squeeze + flow steps + split)",
    "prior.depth": "Glow flow steps per level",
    "prior.width": "channels of Glow's coupling networks",
    "prior.coupling": "Glow coupling: 'affine' or 'additive'",
    "prior.lu_decomposed": "Glow 1x1 convolutions in LU form",
    "prior.learn_top": "Glow learns its top-level prior",
    "prior.edge_padding": "Glow's coupling convolutions see an edge-padding channel",
    "prior.n_bits": "bits per pixel Glow was trained on (its dequantisation)",
    "prior.mean": "toy prior: mean pixel value",
    "prior.std": "toy prior: pixel standard deviation",
    "prior.component": "toy prior: which component's moments (each differs)",
    "church_weights": "weights of the church Glow (component 0)",
    "bedroom_weights": "weights of the bedroom Glow (component 1)",
    "schedule.sigmas": "explicit sigma ladder, largest first (empty: geometric, below)",
    "schedule.sigma_max": "largest sigma of the geometric ladder",
    "schedule.sigma_min": "smallest sigma of the geometric ladder",
    "schedule.num_levels": "noise levels L of the geometric ladder",
    "schedule.steps_per_level": "Langevin steps per level T (the run's time grows with it)",
    "schedule.step_lr": "step size delta: level i steps eta_i = delta * sigma_i^2 / sigma_L^2",
    "schedule.likelihood_weight": "weight w of the data term (m - g(x))",
    "schedule.gammas": "likelihood std per level (empty: sigma_i)",
    "mixing.kind": "mixing g: 'sum' (of alpha_j x_j) | 'grayscale' (colorization) | 'clipped_sum'",
    "mixing.alphas": "gain alpha_j of each component",
    "sampler.init": "start: 'uniform' | 'normal' (empty: the prior's own start)",
    "sampler.init_range": "range of the uniform start",
    "sampler.init_mean": "mean of the normal start N(init_mean, 1)",
    "sampler.clamp": "clip the final state to (low, high) (empty: no clamp)",
    "sampler.num_samples": "posterior samples per mixture (the run's time grows with it)",
    "sampler.hard_constraint": "project onto g(x) = m after every step (linear g)",
    "sampler.metropolis": "accept or refuse every step (MALA; priors with a log-density: Glow)",
    "sampler.snapshots": "also keep the state at the end of every level (paper Figure 9)",
    "sampler.unroll": "lax.scan unroll of the step loop (speed only)",
    "sampler.divergence_bound": "|x| above it after a level counts as diverged (before the clamp)",
    "sampler.prune_after": "keep `survivors` chains a mixture after this many levels (0: all)",
    "sampler.survivors": "chains kept per mixture when pruning",
    "select": "which sample is kept: 'likelihood' | 'residual' | 'none' (all)",
    "data.source": "mnist | cifar10 | lsun_church | lsun_bedroom | image_folder | tfds | prior",
    "data.path": "local dataset files (folder, archive, .npz); None: tensorflow-datasets",
    "data.split": "dataset split the mixtures come from",
    "data.resolution": "square side for LSUN and image folders (None: as stored)",
    "data.tfds_name": "tfds dataset name for source 'tfds'",
    "data.tfds_data_dir": "tfds data directory (None: ~/tensorflow_datasets)",
    "data.download": "let tfds download and prepare a missing dataset (needs TensorFlow)",
    "data.verify_checksums": "check local files against their published checksums",
    "data.num_examples": "use only the split's first N examples (None: all)",
    "data.first_example": "skip the split's first K examples",
    "data.sha256": "SHA-256 a local file must have (None: unchecked)",
    "mixture.kind": "agnostic | class_split | grayscale | images (your own mixture files)",
    "mixture.num_components": "components k per mixture",
    "mixture.seed": "which images are paired",
    "mixture.distinct_classes": "agnostic only: redraw until the k classes differ",
    "mixture.num_mixtures": "None: config.num_mixtures",
    "mixture.class_groups": "class_split without defaults: labels of each component",
    "mixture.files": "kind 'images': folder, glob or comma-separated mixture files",
    "mixture.image_scale": "kind 'images': the mixture value of pixel 255 (None: 1)",
    "output.grid_rows": "mixtures shown in separations.png",
    "output.component_pngs": "also write components/mixture_NNNNN_component_J.png",
}


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 1234
  config.num_mixtures = 50
  config.batch_size = 50
  config.distributed = ml_collections.ConfigDict({
      "enabled": False, "coordinator_address": "", "num_processes": 0, "process_id": -1})
  config.max_device_memory_gb = 0.0

  # Every config sets its own prior (configs/mnist_ncsn.ncsn_prior, score_unet_common.
  # unet_prior, mnist_glow.glow_prior write full sections); this one is complete too.
  config.prior = ml_collections.ConfigDict({"name": "ncsn", "weights": "", "dataset": "mnist",
                                            "use_ema": True, "seed": 0,
                                            "allow_random_weights": False})
  config.priors = ()

  config.schedule = ml_collections.ConfigDict({
      "sigma_max": 1.0, "sigma_min": 0.01, "num_levels": 10, "sigmas": (),
      "steps_per_level": 100, "step_lr": 3e-5, "likelihood_weight": 1.0, "gammas": (),
  })
  config.mixing = ml_collections.ConfigDict({"kind": "sum", "alphas": (1.0, 1.0)})
  config.sampler = ml_collections.ConfigDict({
      "init": "", "init_range": (0.0, 1.0), "init_mean": 0.0, "clamp": (), "num_samples": 1,
      "hard_constraint": False, "metropolis": False, "snapshots": False, "unroll": 1,
      "divergence_bound": 1e3,
      "prune_after": 0, "survivors": 1,
  })
  config.select = "none"
  config.data = data.data_config_defaults()
  config.mixture = mixtures.mixture_config_defaults()
  config.output = ml_collections.ConfigDict({"grid_rows": 8, "component_pngs": False})
  return config
