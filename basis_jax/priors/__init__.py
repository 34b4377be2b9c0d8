"""Priors, chosen by name by module convention.

A prior named N is the module basis_jax/priors/N.py exposing `load(config, schedule) ->
Prior` (see `base.Prior`); a score network also defines `NETWORK` (network_spec.py), which
the trainer looks up here too. Importing is lazy so a CLI that uses the Gaussian toy does
not import the network code.
"""

import importlib
import os
import re

from basis_jax.errors import ConfigError
from basis_jax.priors.base import Prior

# The names whose module is called otherwise.
_MODULE_OF = {"gaussian_toy": "gaussian"}


def names() -> list[str]:
  """Every prior: the modules of this package that define `load` (found without importing)."""
  folder = os.path.dirname(__file__)
  found = []
  for file in sorted(os.listdir(folder)):
    if file.endswith(".py") and not file.startswith("_"):
      with open(os.path.join(folder, file)) as f:
        if re.search(r"^def load\(", f.read(), re.MULTILINE):
          found.append(file[:-3])
  aliases = {module: name for name, module in _MODULE_OF.items()}
  return sorted(aliases.get(n, n) for n in found)


def _module(name: str):
  known = names()
  if name not in known:
    raise ConfigError(f"Unknown prior {name!r}; known priors: {known}.")
  return importlib.import_module(f"{__name__}.{_MODULE_OF.get(name, name)}")


def load(prior_config, schedule=None) -> Prior:
  """Builds the prior named by `prior_config.name` with its weights."""
  return _module(prior_config.name).load(prior_config, schedule=schedule)


def score_network(name: str):
  """The `network_spec.ScoreNetwork` of the score-network prior `name`."""
  from basis_jax.priors import network_spec  # pylint: disable=import-outside-toplevel
  return network_spec.of_module(_module(name), name)


__all__ = ["Prior", "load", "names", "score_network"]
