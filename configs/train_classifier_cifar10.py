"""Train the project's CIFAR-10 classifier (basis_jax/evaluation/classifier.py), used to
measure label recovery of separations and colorizations (experiments/label_recovery.py;
docs/classifier.md).

- stem 24, stages 24/48/96 (conv → 2×2 max-pool → conv, BN + ReLU): 0.17M parameters,
  sized by measured step time to train in ~20 minutes on a 2-core CPU: 2.27 CPU-seconds
  per step of 256 (16/32/64: 1.44; 32/64/128: 3.36), so ~1.1-1.2 s/step on two free
  cores, ~19 minutes for 5 epochs (docs/classifier.md).
- SGD Nesterov 0.9, lr 0.2 at batch 256 (linear warm-up over 100 steps, then linear decay
  to 0), weight decay 5e-4 on the kernels, label smoothing 0.1, random flips and 4-pixel
  reflect-padded random crops; 5 epochs (975 steps).
- Trained on the 50,000 training images (the project uses a JPEG-lossy copy, quality 75),
  tested on the exact test images of --config.test_data.path (split 'test').

  python -m experiments.train_classifier --config=configs/train_classifier_cifar10.py \
      --config.data.path=/path/to/cifar10_train.npz \
      --config.test_data.path=/path/to/cifar10_test.npz --workdir=runs/classifier

`--config.max_steps=20` times the step without training the whole run.
"""

import ml_collections

from basis_jax.files import data
from configs import base_training


def get_config(variant: str = ""):
  if variant not in ("", "features"):
    raise ValueError(f"Unknown variant {variant!r}; use '' (the label-recovery classifier) "
                     "or 'features'.")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.model = ml_collections.ConfigDict({"stem": 24, "widths": (24, 48, 96),
                                            "num_classes": 10})
  config.data = data.data_config_defaults()
  config.data.source = "cifar10"
  config.data.split = "train"
  config.test_data = data.data_config_defaults()
  config.test_data.source = "cifar10"
  config.test_data.split = "test"
  config.batch_size = 256
  config.num_epochs = 5
  config.max_steps = 0  # > 0: stop after this many steps (timing, smoke tests).
  config.optim = base_training.optim(name="sgd_nesterov", lr=0.2, momentum=0.9,
                                    weight_decay=5e-4, warmup_steps=100)
  config.label_smoothing = 0.1
  config.crop_padding = 4
  config.init_weights = ""  # classifier.npz to start from, or training_state.npz to continue.
  config.log_every = 0  # Steps per progress line and metrics record; 0: once per epoch.
  config.checkpoint_every = 0  # 0: at the end only (and at max_seconds).
  config.max_to_keep = 2
  config.max_seconds = 0.0  # > 0: checkpoint and stop after this long; rerun to continue.
  if variant == "features":
    # The feature network of the sample-quality scores (issue 37): the same stage layout at
    # the widths of the fast CIFAR-10 trainers (1.97M parameters), 12 epochs. Measured on
    # the 2-core CPU (Python 3.12, jax 0.12): 2.86 s per step of 256 (64/128/256: 1.73 s).
    config.model.update(stem=24, widths=(64, 256, 256))
    config.num_epochs = 12
    config.log_every = 39  # Five records per epoch (195 steps).
    config.checkpoint_every = 195
  return config
