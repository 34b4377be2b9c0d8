"""BASIS with two Glow priors on LSUN 64×64: church for component 0, bedroom for component 1.

Each component has its own per-σ stack of Glows (4 levels, depth 48 as in BASIS's LSUN
separation script, width 512), so `config.priors` lists two priors; the sampler scans over
both stacks. Mixtures are user images here (`mixture.kind = 'images'`, averages of a
church and a bedroom photo, 64×64); basis_jax.files.mixtures has no two-dataset test-set mixture.

  python -m experiments.separate --config=configs/lsun_glow.py --workdir=/tmp/sep_lsun \
      --config.church_weights=/tmp/glow_church/glow_sigmas.npz \
      --config.bedroom_weights=/tmp/glow_bedroom/glow_sigmas.npz \
      --config.mixture.files='/path/to/mixtures/*.png'
"""

from configs import base_separation
from configs import mnist_glow


def get_config():
  config = mnist_glow.apply_glow_defaults(base_separation.get_config())
  church = mnist_glow.glow_prior(image_shape=(64, 64, 3), levels=4, depth=48)
  bedroom = mnist_glow.glow_prior(image_shape=(64, 64, 3), levels=4, depth=48)
  church.seed, bedroom.seed = 0, 1
  # Command-line flags cannot index into a tuple; these top-level fields are references
  # shared with the two priors' `weights`.
  config.church_weights = ""
  config.bedroom_weights = ""
  church.weights = config.get_ref("church_weights")
  bedroom.weights = config.get_ref("bedroom_weights")
  config.prior = None  # One prior per component instead (config.priors).
  config.priors = (church, bedroom)
  config.mixture.kind = "images"
  config.mixture.files = ""
  return config
