"""Train the project's CIFAR-10 classifier (for label recovery; docs/classifier.md).

  python -m experiments.train_classifier --config=configs/train_classifier_cifar10.py \
      --config.data.path=/path/to/cifar10_train.npz \
      --config.test_data.path=/path/to/cifar10_test.npz --workdir=runs/classifier

Writes WORKDIR/classifier.npz (atomically), metrics.jsonl and config.json; rerunning the
same command resumes from WORKDIR/checkpoints (`--config.max_seconds` stops early, at a
checkpoint).
"""

from absl import app, flags
from ml_collections import config_flags

from basis_jax.training import classifier_training

from basis_jax import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Weights, metrics and config are written here.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False,
    "Continue a workdir whose config.json differs on keys that change what is trained.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  classifier_training.train(_CONFIG.value, _WORKDIR.value,
                            allow_config_change=_ALLOW_CONFIG_CHANGE.value)


if __name__ == "__main__":
  cli.run(main, log_name="train.log", cpu_device_per_core=True)
