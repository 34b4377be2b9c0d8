"""Colorization of CIFAR-10 with this project's prior: recover RGB from the channel mean.

Colorization is BASIS with one component and g(x) = mean over RGB (mixing 'grayscale'); the
"mixture" is the grayscale image [32, 32, 1]. The prior is configs/cifar_unet.py's (the
σ-conditioned score network trained here; shipped weights or --config.prior.weights).

  python -m experiments.separate --config=configs/cifar_color_unet.py \
      --config.data.path=/path/to/cifar10 --workdir=runs/cifar_color_unet

Variant ':heldout': training images 48,000-49,999, which the prior never saw (choose
settings on these). Schedule: the released colorization runner's (σ 10 levels geometric
1 → 0.01, δ = 2e-5, T = 50, clamp [0, 1]) with the hard constraint mean_RGB(x) = m (x
projected after every step, as the separation configs do) instead of the runner's soft
data term (w = 3 here: see configs/cifar_color_ncsn.py for why the runner's λ = 1.5 is
w = 3): chosen on 40 held-out images with the shipped weights, where PSNR rose with the
data term's weight, w = 1 22.0, w = 3 22.5, w = 10 22.9, hard 23.5 dB (T = 20: 21.7;
docs/score_unet_cifar10.md). `--config.sampler.hard_constraint=False` gives the runner's.
"""

from configs import base_separation
from configs import cifar_unet
from configs import score_unet_common

VARIANTS = ("test", "heldout")


def get_config(variant: str = "test"):
  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; use one of {VARIANTS}.")
  config = base_separation.get_config()
  config.prior = score_unet_common.unet_prior("cifar10")
  config.schedule.update(sigma_max=1.0, sigma_min=0.01, num_levels=10, steps_per_level=50,
                         step_lr=2e-5, likelihood_weight=3.0)
  config.mixing.update(kind="grayscale", alphas=(1.0,))
  config.sampler.update(init="uniform", init_range=(0.0, 1.0), clamp=(0.0, 1.0),
                        hard_constraint=True)
  config.data.update(source="cifar10", split="test")
  config.mixture.update(kind="grayscale", num_components=1)
  if variant == "heldout":
    config.data.update(split="train", first_example=cifar_unet.HELDOUT_FIRST)
  return config
