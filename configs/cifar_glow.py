"""BASIS with Glow priors on CIFAR-10 (class split: animals vs vehicles, Table 3).

Same settings as configs/mnist_glow.py (average mixture, N(0, 1) init, T = 100, δ = 3e-5,
likelihood weight 4); the Glow is openai's CIFAR-10 architecture (3 levels, depth 32,
width 512), fine-tuned per σ with experiments/train_glow.py.

  python -m experiments.separate --config=configs/cifar_glow.py --workdir=/tmp/sep_cifar_glow \
      --config.prior.weights=/tmp/glow_cifar/glow_sigmas.npz --config.data.path=/path/to/cifar
"""

from configs import base_separation
from configs import mnist_glow


def get_config():
  config = mnist_glow.apply_glow_defaults(base_separation.get_config())
  config.prior = mnist_glow.glow_prior(image_shape=(32, 32, 3))
  config.data.update({"source": "cifar10", "split": "test"})
  config.mixture.kind = "class_split"
  return config
