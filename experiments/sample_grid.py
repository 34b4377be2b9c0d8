"""An unconditional sample grid of a score network's weights: the trainer's grid, on demand.

  python -m experiments.sample_grid --config=configs/train_score_unet_cifar10.py \
      --weights=basis_jax/weights/score_unet_cifar10.npz \
      --out=docs/images/score_unet_cifar10_samples.png

`experiments.train` draws this grid every `config.sampling.every` steps; here it comes
from any weights file of the config's network (shipped, exported or a training state; the
EMA weights where the file has them): `config.sampling` sets the σ ladder, steps per level,
step size and number of samples (override them as usual, e.g.
`--config.sampling.num_samples=64`).
"""

import logging

from absl import flags
from ml_collections import config_flags

from basis_jax import cli

from basis_jax.training import score_training

_CONFIG = config_flags.DEFINE_config_file("config", None, "A training config (configs/train_*.py).",
                                          lock_config=True)
_WEIGHTS = flags.DEFINE_string("weights", None, "A weights file of the config's network.")
_OUT = flags.DEFINE_string("out", None, "Where to write the PNG.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the sampling noise.")
flags.mark_flags_as_required(["config", "weights", "out"])


def main(argv):
  del argv
  score_training.write_sample_grid(_CONFIG.value, _WEIGHTS.value, _OUT.value, _SEED.value)
  logging.info("Wrote %s", _OUT.value)


if __name__ == "__main__":
  cli.run(main, cpu_device_per_core=True)
