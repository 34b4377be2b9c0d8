"""Train the project's CIFAR-10 classifier (for label recovery; docs/classifier.md).

  python -m experiments.train_classifier --config=configs/train_classifier_cifar10.py \
      --config.data.path=/path/to/cifar10_train.npz \
      --config.test_data.path=/path/to/cifar10_test.npz --workdir=runs/classifier

Writes WORKDIR/classifier.npz (atomically), metrics.jsonl and config.json; rerunning the
same command resumes from WORKDIR/checkpoints (`--config.max_seconds` stops early, at a
checkpoint).
"""


from basis_jax.training import classifier_training

from basis_jax import cli

_CONFIG, _WORKDIR, _ALLOW_CONFIG_CHANGE = cli.define_run_flags(
    "Training config file.", "Weights, metrics and config are written here (resumed if it "
    "exists).", resumes=True)


def main(argv):
  del argv
  classifier_training.train(_CONFIG.value, _WORKDIR.value,
                            allow_config_change=_ALLOW_CONFIG_CHANGE.value)


if __name__ == "__main__":
  cli.run(main, log_name="train.log", cpu_device_per_core=True)
