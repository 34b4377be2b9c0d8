"""Glow on MNIST (32×32×3, as BASIS trains it), then noise fine-tuning for every σ.

Full size (BASIS / openai: 3 levels, depth 32, width 512, ~44.6M parameters):

  python -m experiments.finetune_glow --config=configs/train_glow_mnist.py \
      --workdir=/tmp/glow_mnist --config.data.path=/path/to/mnist

A small model that trains on a CPU in about half an hour (docs/glow.md has its numbers):

  python -m experiments.finetune_glow --config=configs/train_glow_mnist.py:small \
      --workdir=/tmp/glow_mnist_small --config.data.path=/path/to/mnist
"""

import ml_collections

from basis_jax import data as data_lib


def get_config(size: str = "full"):
  if size not in ("full", "small"):
    raise ValueError(f"Unknown variant {size!r}; use 'full' or 'small'.")
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
  config.train = ml_collections.ConfigDict({
      "batch_size": 64, "learning_rate": 1e-3, "warmup_steps": 2000,
      "train_steps": 200_000,
      "finetune_steps": 9_400,  # ~10 epochs of 60k images, as the BASIS appendix reports.
      "seed": 0, "init_batch_size": 256, "eval_batch_size": 500, "log_every": 100,
      "checkpoint_every": 2000, "max_restarts": 3,
      # A wall-clock budget per start (0: none): checkpoint, stop; re-running resumes.
      "max_seconds": 0.0})
  config.data = data_lib.data_config_defaults()
  config.data.source = "mnist"
  config.data.split = "train"
  config.eval_split = "test"
  config.init_weights = ""
  # Resume a workdir although a key that changes the weights differs from its config.json.
  config.allow_config_change = False
  if size == "small":
    config.model.update({"depth": 4, "width": 32})
    config.train.update({"batch_size": 64, "warmup_steps": 100, "train_steps": 1500,
                         "finetune_steps": 100, "init_batch_size": 128, "log_every": 50,
                         "checkpoint_every": 250})
  return config
