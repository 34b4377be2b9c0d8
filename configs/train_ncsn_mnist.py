"""Train the NCSN score network on MNIST with annealed denoising score matching.

The defaults are the reference's (ermongroup/ncsn `anneal.yml`, MNIST): ngf 64, 10 noise
levels geometric from σ=1 to 0.01, Adam lr 1e-3 β=(0.9, 0.999), batch 128, 200k steps,
no EMA, float32. Data: the four MNIST IDX .gz files in --config.data.path (or, without a
path, TFDS 'mnist').

  python -m experiments.train --config=configs/train_ncsn_mnist.py \
      --config.data.path=/path/to/mnist --workdir=/tmp/ncsn_mnist

Re-running the same command resumes from WORKDIR/checkpoints. Useful switches:
--config.ema_rate=0.999, --config.model.dtype=bfloat16, --config.init_weights=weights.npz
(start from a compact file), --config.num_steps.
"""

import ml_collections

from basis_jax.files import data
from configs import base_training
from ml_collections.config_dict import placeholder


def base_config() -> ml_collections.ConfigDict:
  """Fields shared by the MNIST and CIFAR-10 training configs."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  # enabled: jax.distributed.initialize() (multi-host; see basis_jax.files.sharding).
  config.distributed = ml_collections.ConfigDict({
      "enabled": False, "coordinator_address": "", "num_processes": 0, "process_id": -1})
  # Architecture (basis_jax.priors.ncsn.NCSNConfig); unset fields keep the dataset preset.
  # dtype 'bfloat16': bf16 compute with float32 parameters.
  config.model = ml_collections.ConfigDict({
      "name": "ncsn", "dataset": "mnist", "channels": placeholder(int),
      "image_size": placeholder(int), "ngf": placeholder(int), "num_classes": placeholder(int),
      "dtype": placeholder(str)})
  config.sigmas = ml_collections.ConfigDict({"sigma_max": 1.0, "sigma_min": 0.01})
  # basis_jax.files.data fields: source, path (None: through tfds), split, num_examples, ...
  config.data = data.data_config_defaults()
  config.data.split = "train"
  config.training = ml_collections.ConfigDict({"batch_size": 128, "random_flip": False})
  config.optim = base_training.optim()  # Adam, lr 1e-3, β (0.9, 0.999), as the reference.
  config.ema_rate = 0.0  # The reference keeps no EMA; 0.999 is a common choice.
  config.num_steps = 200_000
  config.max_seconds = 0.0  # > 0: stop (after checkpointing) once this wall time has passed.
  config.log_every = 100
  config.checkpoint_every = 5000  # Also rewrites WORKDIR/weights.npz.
  config.max_to_keep = 3
  config.compact_opt_state = False  # Put Adam's moments into weights.npz too.
  config.init_weights = ""  # Compact (or converted) weights file to start from.
  # The last num_images training images are held out (never trained on); every
  # heldout_every steps the DSM loss of eval_images of them at each σ band goes to
  # metrics.jsonl (raw and EMA weights). Settings are chosen on these, never on the test set.
  config.heldout = ml_collections.ConfigDict({"num_images": 0, "eval_images": 512})
  config.heldout_every = 0
  # Unconditional sample grids (plain annealed Langevin, as NCSN samples): δ=2e-5, T=100.
  config.sampling = ml_collections.ConfigDict({
      "every": 5000, "num_samples": 64, "steps_per_level": 100, "step_lr": 2e-5})
  return config


def get_config():
  return base_config()
