"""Train the NCSN score network on CIFAR-10 with annealed denoising score matching.

Reference settings (ermongroup/ncsn `anneal.yml`, CIFAR-10): ngf 128, random horizontal
flips, 10 levels σ=1→0.01, Adam lr 1e-3, batch 128, 200k steps. Data through TFDS
'cifar10' by default, or local files (the python batches, their .tar.gz, or an .npz with
x_train/y_train) via --config.data.path:

  python -m experiments.train --config=configs/train_ncsn_cifar.py --workdir=/tmp/ncsn_cifar
  python -m experiments.train --config=configs/train_ncsn_cifar.py --workdir=/tmp/ncsn_cifar \
      --config.data.path=/path/to/cifar-10-python.tar.gz
"""

from configs import train_ncsn_mnist


def get_config():
  config = train_ncsn_mnist.base_config()
  config.model.dataset = "cifar10"
  config.data.source = "cifar10"
  config.training.random_flip = True
  return config
