"""The one description of a score network, read by the prior loader and the trainer alike.

A score network is a prior module (basis_jax/priors/<name>.py) that also defines
`NETWORK = ScoreNetwork(...)`: how it is conditioned, its config class and dataset presets,
how to build it, its score function, its weights files. `basis_jax.priors.score_network(name)`
finds it by that module convention, so adding a network or a dataset preset touches only the
network's module (and its configs).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Callable, Mapping

import jax.numpy as jnp
from flax import nnx

from basis_jax.files import checkpoint_io
from basis_jax.errors import ConfigError
from basis_jax.priors import base

CONDITIONINGS = ("level", "sigma")
_WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "weights")


@dataclasses.dataclass(frozen=True)
class ScoreNetwork:
  """A score network as its prior and its trainer see it."""

  architecture: str  # The `architecture` recorded in its weights files.
  # 'level': called with an index into the σ ladder it was trained on (NCSN);
  # 'sigma': called with σ itself, so any ladder inside its trained range works.
  conditioning: str
  config_class: type  # Frozen dataclass with from_dict; its presets are classmethods.
  presets: Mapping[str, Callable[..., Any]]  # Dataset name -> config factory(**overrides).
  fields: tuple[str, ...]  # Architecture fields a config section may set explicitly.
  build: Callable[[Any, int], Any]  # (config, seed) -> nnx.Module.
  abstract_params: Callable[[Any], tuple[Any, Any]]  # config -> (graphdef, abstract params).
  make_score_fn: Callable[[Any], Callable]  # graphdef -> score(params, x, level or σ).
  weights_stem: str  # Shipped weights: basis_jax/weights/<stem>_<dataset>.npz.

  def __post_init__(self):
    if self.conditioning not in CONDITIONINGS:
      raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}.")

  def config_from(self, section):
    """The network config of a config section (config.prior or config.model): its
    'dataset' preset, then the fields it sets explicitly."""
    return base.preset_config(section, self.presets, self.fields, self.architecture)

  def explicit_fields(self, section) -> dict[str, Any]:
    return base.explicit_fields(section, self.fields)

  def shipped_weights(self, dataset: str) -> str | None:
    """The package's weights for `dataset`, or None when it ships none."""
    path = os.path.join(_WEIGHTS_DIR, f"{self.weights_stem}_{dataset}.npz")
    return path if os.path.exists(path) else None

  def score_at_levels(self, graphdef, sigmas):
    """score(params, x, level) on the ladder `sigmas`, as the sampler calls it: the one place
    a level becomes what the network is conditioned on (the level itself, or σ_level)."""
    score = self.make_score_fn(graphdef)
    if self.conditioning == "level":
      return score
    sigmas = jnp.asarray(sigmas, jnp.float32)
    return lambda params, x, level: score(params, x, sigmas[level])

  def load_section(self, section, *, shipped: str | None, name: str, ways: str):
    """The network a prior section asks for: (config, graphdef, params, metadata, path).

    The section's weights file, or `shipped` (the package's for its dataset preset, or
    None) when it names none, checked against the preset's image shape and the architecture
    fields the section sets. With no weights at all: a random initialisation from
    section['seed'], only where section['allow_random_weights'] asks for it (`ways`: how to
    get weights; `name`: the prior's name in messages); path is None then, metadata {}.
    """
    config = self.config_from(section)
    path = section["weights"] or shipped
    if not path:
      base.require_random_weights_allowed(section, name, ways)
      logging.warning("%s prior: no weights given, using a random initialisation (seed %s). "
                      "Separations will be meaningless.", name, section["seed"])
      graphdef, params = nnx.split(self.build(config, section["seed"]), nnx.Param)
      return config, graphdef, params, {}, None
    # The dataset preset fixes the image shape; the file fixes the rest.
    expected = {"channels": config.channels, "image_size": config.image_size,
                **self.explicit_fields(section)}
    config, graphdef, params, metadata = self.load_weights(path, expected,
                                                           use_ema=section["use_ema"])
    return config, graphdef, params, metadata, path

  def load_weights(self, path: str, expected: dict[str, Any] | None = None, *,
                   use_ema: bool = True):
    """Reads a weights file; returns (config, graphdef, params, metadata).

    The architecture comes from the file; `expected` fields (the dataset preset's image
    shape, explicit config fields) must agree with it, except the compute dtype, which
    `expected` may set. Training files hold `params/...` and possibly `ema/...` (the EMA
    weights are used when present and `use_ema`); a shipped file may hold `ema/...` alone
    (CIFAR-10's); a converter writes bare parameters.
    """
    expected = dict(expected or {})
    file_config, metadata = base.file_architecture(
        path, self.architecture, self.config_class.from_dict, expected)
    config = dataclasses.replace(file_config, dtype=expected.get("dtype", file_config.dtype))
    graphdef, abstract = self.abstract_params(config)
    groups = checkpoint_io.list_groups(path)
    if not use_ema and "ema" in groups and "params" not in groups:
      raise checkpoint_io.CheckpointError(
          f"{path} holds only EMA weights (as CIFAR-10's shipped file does), but use_ema=False "
          "asks for the raw weights; set prior.use_ema=True, or give a training state, which "
          "holds both.")
    prefix = "ema" if use_ema and "ema" in groups else "params"
    if prefix not in groups:
      prefix = None  # A bare parameter file.
    target = abstract if prefix is None else {prefix: abstract}
    loaded, _ = checkpoint_io.load_params(path, target, allow_unexpected=prefix is not None)
    return config, graphdef, loaded if prefix is None else loaded[prefix], metadata


def of_module(module, name: str) -> ScoreNetwork:
  network = getattr(module, "NETWORK", None)
  if not isinstance(network, ScoreNetwork):
    raise ConfigError(f"{name!r} is a prior but not a score network; the trainer trains "
                      "priors whose module defines NETWORK (basis_jax.priors.network_spec).")
  return network
