"""Colorization of CIFAR-10 with the NCSN prior: recover RGB from the channel mean.

  python -m experiments.separate --config=configs/cifar_color_ncsn.py \
      --config.prior.weights=weights/ncsn_cifar10.npz --workdir=/tmp/cifar_color

Colorization is BASIS with one component and the mixing operator g(x) = mean over RGB
(mixing 'grayscale'); the "mixture" is the grayscale image [32, 32, 1].

Defaults are the released colorization runner's (BASIS `cifar_color_runner.py`):
- σ: 10 levels geometric 1.0 → 0.01, T = 100; δ = 2e-5 (not the separation runners' 3e-5).
- w = 3. The runner adds λ∇‖mean_c(x) − m‖² with λ = 1.5/σ² and no ½; that gradient is
  1.5·2·(1/3)(m − g(x)) per channel = 3·Aᵀ(m − g(x)) with Aᵀr = r/3, the adjoint the
  sampler uses, so the runner's "1.5" is w = 3 here (as the MNIST runner's λ = 1/σ² is
  w = 2). Set --config.schedule.likelihood_weight=1.5 for the literal λ.
- Init x ~ U(0, 1); no clamp (the runner does not clamp).
"""

from configs import base_separation
from configs import mnist_ncsn


def get_config():
  config = base_separation.get_config()
  config.prior = mnist_ncsn.ncsn_prior("cifar10")
  config.schedule.update(sigma_max=1.0, sigma_min=0.01, num_levels=10, steps_per_level=100,
                         step_lr=2e-5, likelihood_weight=3.0)
  config.mixing.update(kind="grayscale", alphas=(1.0,))
  config.sampler.update(init="uniform", init_range=(0.0, 1.0), clamp=())
  config.data.update(source="cifar10", split="test")
  config.mixture.update(kind="grayscale", num_components=1)
  return config
