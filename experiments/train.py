"""Train a score network: `python -m experiments.train --config=CONFIG --workdir=DIR`.

The network is the prior `config.model.name` names, any whose module defines a `NETWORK`
spec (basis_jax/priors/network_spec.py). Re-running the same command on the same
workdir resumes from its latest checkpoint (with the same config: a changed key that
changes the weights is refused unless --allow_config_change).
"""

from absl import app, flags
from ml_collections import config_flags

from basis_jax import cli

from basis_jax.training import score_training

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, weights, samples, metrics.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool("allow_config_change", False,
                                         cli.ALLOW_CONFIG_CHANGE_HELP)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  score_training.train_and_evaluate(_CONFIG.value, _WORKDIR.value,
                                    allow_config_change=_ALLOW_CONFIG_CHANGE.value)


def run():
  cli.run(main, log_name="train.log", cpu_device_per_core=True)


if __name__ == "__main__":
  run()
