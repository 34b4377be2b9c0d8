"""Train a score network: `python -m experiments.train --config=CONFIG --workdir=DIR`.

The network is the prior `config.model.name` names, any whose module defines a `NETWORK`
spec (basis_jax/priors/network_spec.py). Re-running the same command on the same
workdir resumes from its latest checkpoint (with the same config: a changed key that
changes the weights is refused unless --allow_config_change).
"""


from basis_jax import cli

from basis_jax.training import score_training

_CONFIG, _WORKDIR, _ALLOW_CONFIG_CHANGE = cli.define_run_flags(
    "Training config file.", "Checkpoints, weights, samples, metrics (resumed if it exists).",
    resumes=True)


def main(argv):
  del argv
  score_training.train_and_evaluate(_CONFIG.value, _WORKDIR.value,
                                    allow_config_change=_ALLOW_CONFIG_CHANGE.value)


def run():
  cli.run(main, log_name="train.log", cpu_device_per_core=True)


if __name__ == "__main__":
  run()
