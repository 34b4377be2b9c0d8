"""Glow on MNIST, then noise fine-tuning for every σ of the separation ladder.

Default: the Glow the package ships (basis_jax/weights/glow_mnist.npz, the default prior of
configs/mnist_glow.py): MNIST's own 28×28×1 layout, 2 levels (14×14×4, 7×7×8), depth 16,
width 64, 0.33M parameters per σ. Chosen by measured cost on the 2-core CPU
(`python -m studies.glow_throughput`, docs/glow.md): the paper's glow32 layout (32×32×3
tiled) costs 2.3× more per training image and 1.6× more per score at the same depth and
width, for the same 784 MNIST values. The last 2,000 training images (58,000-59,999) are
never trained on: held-out bits/dim before and after each stage come from them.

  python -m experiments.train_glow --config=configs/train_glow_mnist.py \
      --workdir=runs/glow_mnist --config.data.path=/path/to/mnist

':paper': the paper's size (BASIS / openai: 32×32×3 glow32, 3 levels, depth 32, width 512,
~44.6M parameters), for an accelerator.

':small': the 32×32×3 model of the first CPU runs (docs/glow.md), about half an hour:

  python -m experiments.train_glow --config=configs/train_glow_mnist.py:small \
      --workdir=/tmp/glow_mnist_small --config.data.path=/path/to/mnist
"""

import ml_collections

from basis_jax.files import data as data_lib
from configs import base_training


HELDOUT_FIRST = 58_000  # Training images from here on are held out.
VARIANTS = ("native", "paper", "small")


def get_config(size: str = "native"):
  if size not in VARIANTS:
    raise ValueError(f"Unknown variant {size!r}; use one of {VARIANTS}.")
  config = ml_collections.ConfigDict()
  config.model = ml_collections.ConfigDict({
      "image_shape": (32, 32, 3), "levels": 3, "depth": 32, "width": 512,
      "coupling": "affine", "lu_decomposed": False, "learn_top": True,
      "edge_padding": True, "n_bits": 8,
      # MNIST's 28×28×1 padded to 32×32×3 (glow.PaddedSpace), as BASIS's Glow is trained.
      "data_shape": (28, 28, 1)})
  # The separation ladder: one fine-tuned model per σ (configs/mnist_glow.py uses the same).
  config.schedule = ml_collections.ConfigDict({
      "sigma_max": 1.0, "sigma_min": 0.01, "num_levels": 10, "sigmas": ()})
  # Adamax at 1e-3 with a linear warm-up at the start of every stage, as openai/glow trains.
  config.optim = base_training.optim(name="adamax", lr=1e-3, warmup_steps=2000)
  config.train = ml_collections.ConfigDict({
      "batch_size": 64, "train_steps": 200_000,
      "finetune_steps": 9_400,  # ~10 epochs of 60k images, as the BASIS appendix reports.
      # What each σ stage fine-tunes: 'all' (BASIS: one whole model per σ) or 'modulation'
      # (every actnorm, the zero convs' bias and scale, the split and top priors; the rest
      # stays the clean model's, stored once: a ladder ~1.3× one model instead of 10×).
      "finetune_params": "all",
      # Steps per σ stage, the smallest σ first (one per σ); empty: finetune_steps for each.
      "finetune_steps_per_stage": (),
      # The last fraction of every stage lowers the rate linearly towards zero (0: constant
      # to the end, as openai/glow and the shipped model train).
      "cooldown_fraction": 0.0,
      "seed": 0, "init_batch_size": 256, "eval_batch_size": 500, "log_every": 100,
      "checkpoint_every": 2000, "max_restarts": 3,
      # A wall-clock budget per start (0: none): checkpoint, stop; re-running resumes.
      "max_seconds": 0.0})
  config.data = data_lib.data_config_defaults()
  config.data.source = "mnist"
  config.data.split = "train"
  config.data.num_examples = HELDOUT_FIRST
  # Held-out bits/dim: `eval_batch_size` images of this split from `eval_first_example` on.
  config.eval_split = "train"
  config.eval_first_example = HELDOUT_FIRST
  config.init_weights = ""
  # A trained clean model of a smaller width to start the clean stage from, widened
  # without changing its density (glow.widen); "" trains from scratch.
  config.grow_from = ""
  if size == "native":
    config.model.update({"image_shape": (28, 28, 1), "levels": 2, "depth": 16, "width": 64,
                         "data_shape": (28, 28, 1)})
    config.optim.warmup_steps = 500
    config.train.update({"batch_size": 64, "train_steps": 20_000,
                         "finetune_steps": 1_000, "eval_batch_size": 1000, "log_every": 100,
                         "checkpoint_every": 500})
  if size == "small":
    config.model.update({"depth": 4, "width": 32})
    config.optim.warmup_steps = 100
    config.train.update({"batch_size": 64, "train_steps": 1500,
                         "finetune_steps": 100, "init_batch_size": 128, "log_every": 50,
                         "checkpoint_every": 250})
  return config
