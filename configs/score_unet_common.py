"""The score_unet separation configs' shared parts: the prior section of a dataset's
σ-conditioned score network and the two-component sum with its schedule.

Used by configs/mnist_unet.py, configs/cifar_unet.py and configs/cifar_color_unet.py; the
schedule's defaults and why they were chosen are in configs/mnist_unet.py's docstring.
"""

import ml_collections

from configs import base_separation
from configs import train_score_unet_cifar10, train_score_unet_mnist

VARIANTS = ("agnostic", "class_split", "heldout")
TRAINING_CONFIGS = {"mnist": train_score_unet_mnist.get_config,
                    "cifar10": train_score_unet_cifar10.get_config}


def unet_prior(dataset: str = "mnist") -> ml_collections.ConfigDict:
  """config.prior for the score_unet of `dataset`; the likelihood bound spans the σ range
  that dataset's training config trains on (its σ_max is where the bound's Gaussian prior
  term sits)."""
  trained = TRAINING_CONFIGS[dataset]().sigmas
  return ml_collections.ConfigDict({
      "name": "score_unet",
      "weights": "",  # Empty: the shipped basis_jax/weights/score_unet_<dataset>.npz.
      "dataset": dataset,
      "use_ema": True,  # The EMA weights (False: the raw weights of the same file).
      "dtype": ml_collections.config_dict.placeholder(str),
      "seed": 0,
      "allow_random_weights": False,
      # Query σ outside the trained range anyway (refused by default: extrapolations).
      "allow_sigma_extrapolation": False,
      # The denoising bound on −log p (basis_jax/priors/likelihood.py, docs/likelihood.md): the
      # prior's log_density_fn, for choosing among posterior samples. σ range (MNIST: the
      # trained range, chosen on held-out digits), K noise levels (stratified in log σ),
      # noise draws per level, seed, form ('data': the training loss; 'marginal': bounds
      # p_σmin, as the ODE computes).
      "likelihood": ml_collections.ConfigDict({
          "sigma_min": trained.sigma_min, "sigma_max": trained.sigma_max, "num_sigmas": 64,
          "num_noise": 1, "seed": 0, "form": "data"}),
  })


def sum_config(dataset: str, variant: str, *, likelihood_weight: float,
               heldout_first: int) -> ml_collections.ConfigDict:
  """Two-component sums with the score_unet prior of `dataset` and the schedule of
  configs/mnist_unet.py's docstring; ':heldout' separates training images from
  `heldout_first` on."""
  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; use one of {VARIANTS}.")
  config = base_separation.get_config()
  config.prior = unet_prior(dataset)
  config.schedule.update(sigma_max=1.0, sigma_min=0.01, num_levels=10, steps_per_level=50,
                         step_lr=3e-5, likelihood_weight=likelihood_weight)
  config.mixing.update(kind="sum", alphas=(1.0, 1.0))
  config.sampler.update(init="uniform", init_range=(0.0, 1.0), clamp=(0.0, 1.0),
                        hard_constraint=True)
  config.data.update(source=dataset, split="test")
  config.mixture.update(kind="agnostic" if variant == "heldout" else variant,
                        num_components=2)
  if variant == "heldout":
    config.data.update(split="train", first_example=heldout_first)
  return config
