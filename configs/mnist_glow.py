"""BASIS with Glow priors on MNIST: one noise-fine-tuned Glow per σ.

Default: the Glow the package ships (basis_jax/weights/glow_mnist.npz, trained here with
configs/train_glow_mnist.py: MNIST's own 28×28×1 layout, 2 levels, depth 16, width 64),
no weights flag needed:

  python -m experiments.separate --config=configs/mnist_glow.py --workdir=/tmp/sep_glow \
      --config.data.path=/path/to/mnist --config.num_mixtures=20

The sampler scans over the stacked per-σ parameters, so nothing is reloaded between levels.
As in the reference Glow script: average mixture (α = ½), N(0, 1) initialisation,
η = δ·(σ/0.01)², 10 σ from 1 to 0.01, and likelihood weight 4 (its update adds
η·λ·(2m − x0 − x1), 4× the Gaussian-likelihood gradient α_j(m − g(x))/σ² for α = ½).
The shipped model's variants differ in two settings chosen on held-out mixtures: δ = 2e-5
(not 3e-5) and the hard constraint (`--config.sampler.hard_constraint=False` gives the
reference's soft data term alone); 'paper' and 'small' keep the soft data term.

Variants (comma-separated): mixtures 'agnostic' (default) | 'class_split' (one digit 0-4,
one 5-9) | 'heldout' (training images 58,000-59,999, never trained on: choose settings
here); the model 'paper' (the paper's glow32: 32×32×3, 3 levels, depth 32, width 512,
MNIST padded and tiled by the prior; give --config.prior.weights, e.g. a BASIS release
converted with convert_weights.glow) or 'small' (the first CPU model, docs/glow.md).

Best of S by the Glow's exact likelihood ("Glow, 10×"): --config.sampler.num_samples=10
--config.select=likelihood.
"""

import ml_collections

from configs import base_separation

HELDOUT_FIRST = 58_000
MIXTURES = ("agnostic", "class_split", "heldout")
MODELS = ("native", "paper", "small")


def glow_prior(image_shape=(32, 32, 3), levels=3, depth=32, width=512, weights="",
               data_shape=None, dataset=""):
  """data_shape: the dataset's (H, W, C) when the Glow was trained on padded images;
  dataset: with empty weights, the package's Glow for it (basis_jax/weights/glow_<dataset>.npz)."""
  return ml_collections.ConfigDict({
      "name": "glow", "weights": weights, "dataset": dataset, "seed": 0,
      "allow_random_weights": False,
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


def get_config(variant: str = ""):
  parts = [p for p in variant.split(",") if p]
  unknown = [p for p in parts if p not in MIXTURES + MODELS]
  if unknown:
    raise ValueError(f"Unknown variant {unknown[0]!r}; use mixtures {MIXTURES} and/or a model "
                     f"{MODELS}, comma-separated.")
  mixtures = next((p for p in parts if p in MIXTURES), "agnostic")
  model = next((p for p in parts if p in MODELS), "native")
  config = apply_glow_defaults(base_separation.get_config())
  config.data.update({"source": "mnist", "split": "test"})
  config.mixture.kind = "agnostic" if mixtures == "heldout" else mixtures
  if mixtures == "heldout":
    config.data.update(split="train", first_example=HELDOUT_FIRST)
  if model == "native":
    # The shipped Glow (its file fixes the architecture; these fields must agree with it).
    config.prior = glow_prior(image_shape=(28, 28, 1), levels=2, depth=16, width=64,
                              dataset="mnist")
    # Chosen on 20 held-out mixtures (docs/glow.md): δ = 3e-5 diverges at σ = 0.01 for
    # this model's sharp small-σ densities; 2e-5 gave 17.4 dB, 1e-5 16.5 dB. The hard
    # constraint (x projected onto ½(x₁ + x₂) = m after every step, as the score priors
    # do; the reference uses only its likelihood term) gave 20.0 dB at 2e-5 on the same
    # mixtures, +2.6 [+0.35, +5.3] paired; at 3e-5 it diverges too.
    config.schedule.step_lr = 2e-5
    config.sampler.hard_constraint = True
  else:
    # MNIST's 28×28×1, padded to 32×32×3 by the prior (glow.PaddedSpace); separations.npz
    # stays 28×28×1.
    config.prior = glow_prior(data_shape=(28, 28, 1))
  if model == "small":
    config.prior.update({"depth": 4, "width": 32})
    config.schedule.steps_per_level = 20
    # The small model's σ = 0.01 density is much sharper than N(x, σ²) (100 fine-tuning
    # steps), and Langevin with δ = 3e-5 diverges there; 1e-5 is stable (docs/glow.md).
    config.schedule.step_lr = 1e-5
    config.num_mixtures = 50
  return config
