"""BASIS on MNIST with the NCSN prior: separate sums of two test digits.

  python -m experiments.separate --config=configs/mnist_ncsn.py \
      --config.prior.weights=weights/ncsn_mnist.npz --config.data.path=/path/to/mnist \
      --workdir=/tmp/mnist_ncsn
  python -m experiments.separate --config=configs/mnist_ncsn.py:class_split ...

Weights: a file from `python -m convert_weights.ncsn` (the published checkpoint) or from
`experiments/train.py` (WORKDIR/weights.npz). Without weights the prior falls back to
a shipped default if the package has one; random weights only with
--config.prior.allow_random_weights=True.

Defaults are the released MNIST runner's (BASIS `multiple_mnist_runner.py` at
jthickstun/basis-separation@17627da):
- σ: 10 levels geometric from 1.0 to 0.01, T = 100 steps per level.
- δ = 3e-5 (the paper's text says 2e-5; the released separation runners use 3e-5).
- w = 2: the runner adds λ∇‖x₁ + x₂ − m‖² with λ = 1/σ² and no ½, i.e. twice the
  Gaussian-likelihood gradient (m − Σx)/σ² that w = 1 means here.
- Init x ~ U(0, 1); mixture m = x₁ + x₂ (alphas (1, 1)) in [0, 1] pixel space.
- Clamp to [0, 1] after the last step, as the MNIST runner does.
- Updates are Jacobi (both components from the old state), as in the MNIST runner.
- Mixtures: 'agnostic' (both digits drawn at random; may share a class) by default,
  ':class_split' for one digit from 0–4 and one from 5–9 (paper Table 2).
"""

import ml_collections
from ml_collections.config_dict import placeholder

from configs import base_separation


def ncsn_prior(dataset: str) -> ml_collections.ConfigDict:
  """config.prior for basis_jax.priors.ncsn; unset architecture fields come from the file."""
  return ml_collections.ConfigDict({
      "name": "ncsn",
      "weights": "",  # Converted or trained weights file (.npz).
      "dataset": dataset,  # Architecture preset: 'mnist' (28x28x1) or 'cifar10' (32x32x3).
      "ngf": placeholder(int),
      "dtype": placeholder(str),  # 'bfloat16': bf16 compute.
      "use_ema": True,  # Training files with EMA weights: use those.
      "seed": 0,  # Random initialisation when there are no weights...
      "allow_random_weights": False,  # ...which is refused unless this is True.
  })


def get_config(mixture_kind: str = "agnostic"):
  if mixture_kind not in ("agnostic", "class_split"):
    raise ValueError(f"Unknown variant {mixture_kind!r}; use :agnostic or :class_split.")
  config = base_separation.get_config()
  config.prior = ncsn_prior("mnist")
  config.schedule.update(sigma_max=1.0, sigma_min=0.01, num_levels=10, steps_per_level=100,
                         step_lr=3e-5, likelihood_weight=2.0)
  config.mixing.update(kind="sum", alphas=(1.0, 1.0))
  config.sampler.update(init="uniform", init_range=(0.0, 1.0), clamp=(0.0, 1.0))
  config.data.update(source="mnist", split="test")
  config.mixture.update(kind=mixture_kind, num_components=2)
  return config
