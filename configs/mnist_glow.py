"""BASIS with Glow priors on MNIST (the prior pads and tiles to 32×32×3, as BASIS's Glow is trained).

One fine-tuned Glow per σ (experiments/finetune_glow.py writes them, stacked, to
WORKDIR/glow_sigmas.npz); the sampler scans over the stacked parameters, so nothing is
reloaded between levels. As in the reference Glow script: average mixture (α = ½),
N(0, 1) initialisation, η = 3e-5·(σ/0.01)², T = 100, and likelihood weight 4 (its update
adds η·λ·(2m − x0 − x1), 4× the Gaussian-likelihood gradient α_j(m − g(x))/σ² for α = ½).

  python -m experiments.separate --config=configs/mnist_glow.py --workdir=/tmp/sep_glow \
      --config.prior.weights=/tmp/glow_mnist/glow_sigmas.npz \
      --config.data.path=/path/to/mnist

Best-of-N ("Glow 10×"): add --config.sampler.num_samples=10, then
  python -m experiments.best_of_n --config=configs/mnist_glow.py --workdir=/tmp/sep_glow

`:small` matches the CPU-sized model of configs/train_glow_mnist.py:small (T = 20,
δ = 1e-5).
"""

import ml_collections

from configs import base_separation


def glow_prior(image_shape=(32, 32, 3), levels=3, depth=32, width=512, weights="",
               data_shape=None):
  """data_shape: the dataset's (H, W, C) when the Glow was trained on padded images."""
  return ml_collections.ConfigDict({
      "name": "glow", "weights": weights, "seed": 0, "allow_random_weights": False,
      "image_shape": image_shape, "levels": levels, "depth": depth, "width": width,
      "coupling": "affine", "lu_decomposed": False, "learn_top": True,
      "edge_padding": True, "n_bits": 8,
      "data_shape": ml_collections.FieldReference(data_shape, field_type=tuple)})


def apply_glow_defaults(config):
  """The reference Glow separation settings, shared by the Glow configs."""
  config.schedule.update({"sigma_max": 1.0, "sigma_min": 0.01, "num_levels": 10,
                          "steps_per_level": 100, "step_lr": 3e-5,
                          "likelihood_weight": 4.0})
  config.mixing.alphas = (0.5, 0.5)
  config.sampler.init = "normal"
  config.sampler.init_mean = 0.5  # The prior works in [0, 1]: N(0, 1) in Glow's [−½, ½].
  config.sampler.clamp = (0.0, 1.0)  # For evaluation in [0, 1]; the score never sees it.
  return config


def get_config(size: str = "full"):
  if size not in ("full", "small"):
    raise ValueError(f"Unknown variant {size!r}; use 'full' or 'small'.")
  config = apply_glow_defaults(base_separation.get_config())
  # MNIST's 28×28×1, padded to 32×32×3 by the prior (glow.PaddedSpace); separations.npz
  # stays 28×28×1.
  config.prior = glow_prior(data_shape=(28, 28, 1))
  config.data.update({"source": "mnist", "split": "test"})
  config.mixture.kind = "agnostic"
  if size == "small":
    config.prior.update({"depth": 4, "width": 32})
    config.schedule.steps_per_level = 20
    # The small model's σ = 0.01 density is much sharper than N(x, σ²) (100 fine-tuning
    # steps), and Langevin with δ = 3e-5 diverges there; 1e-5 is stable (docs/glow.md).
    config.schedule.step_lr = 1e-5
    config.num_mixtures = 50
  return config
