"""Priors, chosen by name from an explicit table.

Each module exposes `load(config) -> Prior` (see `base.Prior`). Importing is lazy so a
CLI that uses the Gaussian toy does not import the network code.
"""

import importlib

from basis_jax.errors import ConfigError
from basis_jax.priors.base import Prior

PRIORS = {
    "gaussian_toy": "basis_jax.priors.gaussian",
    "ncsn": "basis_jax.priors.ncsn",
    "glow": "basis_jax.priors.glow",
    "score_unet": "basis_jax.priors.score_unet",
}


def load(prior_config, schedule=None) -> Prior:
  """Builds the prior named by `prior_config.name` with its weights."""
  name = prior_config.name
  if name not in PRIORS:
    raise ConfigError(f"Unknown prior {name!r}; known priors: {sorted(PRIORS)}.")
  module = importlib.import_module(PRIORS[name])
  return module.load(prior_config, schedule=schedule)


__all__ = ["PRIORS", "Prior", "load"]
