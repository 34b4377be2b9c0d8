"""BASIS on CIFAR-10 with the NCSN prior: separate sums of two test images.

  python -m experiments.separate --config=configs/cifar_ncsn.py \
      --config.prior.weights=weights/ncsn_cifar10.npz --workdir=/tmp/cifar_ncsn
  python -m experiments.separate --config=configs/cifar_ncsn.py:class_split ...

Data: TFDS 'cifar10' by default, or --config.data.path (python batches, their .tar.gz, or
an .npz with x_test/y_test).

Defaults are the released CIFAR-10 runner's (BASIS `cifar_runner.py` at
jthickstun/basis-separation@17627da):
- σ: 10 levels geometric 1.0 → 0.01, T = 100; δ = 3e-5.
- w = 1: the runner's likelihood term is (m − x₀ − x₁)/σ², exactly the Gaussian gradient.
- Init x ~ U(0, 1); m = x₀ + x₁ (alphas (1, 1)); no clamp (the CIFAR runner does not).
- The runner updates x₁ with the already-updated x₀ (Gauss–Seidel); the batched sampler
  here updates both from the same state (Jacobi).
- Mixtures 'agnostic' by default; ':class_split' for animals vs vehicles (paper Table 3).
"""

from configs import base_separation
from configs import mnist_ncsn


def get_config(mixture_kind: str = "agnostic"):
  if mixture_kind not in ("agnostic", "class_split"):
    raise ValueError(f"Unknown variant {mixture_kind!r}; use :agnostic or :class_split.")
  config = base_separation.get_config()
  config.prior = mnist_ncsn.ncsn_prior("cifar10")
  config.schedule.update(sigma_max=1.0, sigma_min=0.01, num_levels=10, steps_per_level=100,
                         step_lr=3e-5, likelihood_weight=1.0)
  config.mixing.update(kind="sum", alphas=(1.0, 1.0))
  config.sampler.update(init="uniform", init_range=(0.0, 1.0), clamp=())
  config.data.update(source="cifar10", split="test")
  config.mixture.update(kind=mixture_kind, num_components=2)
  return config
