"""Train the NCSN score network on CIFAR-10 with annealed denoising score matching.

Reference settings (ermongroup/ncsn `anneal.yml`, CIFAR-10): ngf 128, random horizontal
flips, 10 levels σ=1→0.01, Adam lr 1e-3, batch 128, 200k steps. Data from TFDS 'cifar10'
by default; or an .npz holding a uint8 [N,32,32,3] array:

  python -m experiments.train_ncsn --config=configs/train_ncsn_cifar.py --workdir=/tmp/ncsn_cifar
  python -m experiments.train_ncsn --config=configs/train_ncsn_cifar.py --workdir=/tmp/ncsn_cifar \
      --config.data.source=npz --config.data.path=cifar.npz --config.data.key=x_train
"""

from configs import train_ncsn_mnist


def get_config():
  config = train_ncsn_mnist.base_config()
  config.model.dataset = "cifar10"
  config.data.source = "tfds"
  config.data.name = "cifar10"
  config.data.random_flip = True
  return config
