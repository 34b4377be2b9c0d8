"""The small interface every prior exposes to the sampler.

A prior is a score function plus its parameters. The sampler never looks inside
either; it only calls

    score_fn(params, x, level) -> ∇_x log p_{σ_level}(x)      x: [B, H, W, C]

with `level` an int32 scalar (possibly traced) indexing the σ ladder, σ_0 largest.
Priors whose parameters differ per level (Glow fine-tuned per σ) supply
`select_level(params, level)`, which the sampler calls once per level, outside the
inner step loop, so only that level's slice is touched by the steps.
Priors with a tractable density (Glow) supply `log_density_fn(params, x, level)`
-> [B], used for best-of-S selection; where it is the density whose gradient the score
is (Glow, the Gaussian toy; not the score networks' likelihood bound), `exact_log_density`
says so and the Metropolis-adjusted sampler (`sampler.metropolis`) may use it.

A prior also owns its data space. Mixtures, ground truth and separations stay in the
dataset's space ([0, 1] pixels of the dataset's shape); `to_prior` maps images into the
space the prior was trained in and `from_prior` maps samples back (Glow on MNIST: padded to
32×32×3 and back). `default_init` is where Langevin starts when the config leaves
`sampler.init` empty, and `sample` (analytic priors) draws clean images, so a run can make
its own mixtures.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from basis_jax import config_help
from basis_jax.files import checkpoint_io
from basis_jax.errors import ConfigError

ScoreFn = Callable[[Any, Any, Any], Any]


def _identity_level(params, level):
  del level
  return params


@dataclasses.dataclass(frozen=True)
class DataSpace:
  """How the dataset's images become the prior's: here they are the same.

  A prior trained on other shapes subclasses this (priors/glow.py pads and tiles). Both
  maps act on host arrays [..., H, W, C], must be linear and keep zero pixel by pixel, so a
  pixel-wise g (a sum, a clipped sum) commutes with them and a mixture maps into the prior's
  space exactly like its components. Spaces compare by value: priors that share a run must
  share one.
  """

  def data_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """(H, W, C) of a dataset image, for a prior of `image_shape`."""
    return tuple(image_shape)

  def to_prior(self, images: np.ndarray) -> np.ndarray:
    return images

  def from_prior(self, images: np.ndarray) -> np.ndarray:
    return images

  @property
  def is_identity(self) -> bool:
    return type(self) is DataSpace  # pylint: disable=unidiomatic-typecheck


# Langevin's start when config.sampler.init is empty: U(0, 1), the data range.
UNIFORM_INIT = {"init": "uniform", "init_range": (0.0, 1.0)}


@dataclasses.dataclass(frozen=True)
class Prior:
  """A generative prior as the sampler sees it."""

  name: str
  score_fn: ScoreFn
  params: Any
  image_shape: tuple[int, int, int]  # (H, W, C) of one component, in the prior's space.
  num_levels: int | None = None  # Levels the network was trained for (None: any).
  select_level: Callable[[Any, Any], Any] = _identity_level
  log_density_fn: Callable[[Any, Any, Any], Any] | None = None
  # log_density_fn is log p_σ itself, with score_fn its gradient (not a bound).
  exact_log_density: bool = False
  # SHA-256 of the weights file the parameters came from (None: analytic or random
  # weights); a resumed separation refuses chunks computed with other weights.
  weights_digest: str | None = None
  data_space: DataSpace = DataSpace()
  default_init: Mapping[str, Any] = dataclasses.field(default_factory=lambda: dict(UNIFORM_INIT))
  # (num, seed) -> [num, *data_shape] clean images, for priors that can draw them.
  sample: Callable[[int, Any], np.ndarray] | None = None

  @property
  def data_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of one component in the dataset's space."""
    return self.data_space.data_shape(self.image_shape)

  def to_prior(self, images: np.ndarray) -> np.ndarray:
    """Dataset-space images [..., *data_shape] -> the prior's space [..., *image_shape]."""
    return self.data_space.to_prior(images)

  def from_prior(self, images: np.ndarray) -> np.ndarray:
    """The prior's space [..., *image_shape] -> dataset-space images [..., *data_shape]."""
    return self.data_space.from_prior(images)


def require_fields(prior_config, fields: Sequence[str], builder: str) -> None:
  """Refuses a prior section that lacks any of `fields`, naming each (before anything is
  loaded); `builder` is the configs/ function that writes the section with its defaults."""
  config_help.require(prior_config, fields,
                      hint=f"build config.prior with {builder}, which sets every field.")


def require_random_weights_allowed(prior_config, name: str, ways: str) -> None:
  """Refuses a random initialisation unless `config.prior.allow_random_weights` asks for it.

  Random weights run and write files that look like results, so they are opt-in (the
  benchmarks and tests opt in). `ways` says how to get weights for this prior.
  """
  if prior_config["allow_random_weights"]:
    return
  raise ConfigError(
      f"The {name} prior has no weights: config.prior.weights is empty and the package ships "
      "none for this model; random weights would write separations that only look like "
      "results.",
      hint=f"use a config whose weights ship with the package (README, Quickstart), {ways}, "
           "then pass --config.prior.weights=FILE; or pass "
           "--config.prior.allow_random_weights=True to run on random weights on purpose.")


EXTRAPOLATION_KEY = "allow_sigma_extrapolation"


def check_sigmas(queried: Sequence[float], source: str, *, ladder=None, sigma_range=None,
                 prior_config=None, asked_by: str = "the schedule") -> None:
  """The one σ policy of every prior: σ it was not trained for are refused, named.

  `ladder`: a prior trained per level (NCSN's level index, Glow's one model per σ) answers
  only at its own ladder, so `queried` must equal it; nothing can override that (level i
  would silently give σ_i's score). `sigma_range` (lo, hi): a σ-conditioned prior answers
  any σ in its trained range; outside it the answer is an extrapolation, refused unless
  `config.prior.allow_sigma_extrapolation` is True (then a warning says so). Neither
  recorded (an old or converted file): nothing to check, said once.
  """
  queried = tuple(float(s) for s in queried)
  show = lambda values: "(" + ", ".join(f"{s:.6g}" for s in values) + ")"
  if ladder is not None:
    ladder = tuple(float(s) for s in ladder)
    if len(ladder) != len(queried) or not np.allclose(ladder, queried, rtol=1e-5, atol=0):
      raise ConfigError(
          f"{source} was trained for σ = {show(ladder)}, but {asked_by} uses σ = "
          f"{show(queried)}; level i would be queried at a σ it was not trained for.",
          hint="Set config.schedule to the file's ladder (sigma_max, sigma_min, num_levels or "
               "an explicit sigmas list).")
    return
  if sigma_range is None:
    logging.warning("%s records no σ range or ladder; cannot check that %s's σ are ones it "
                    "was trained for.", source, asked_by)
    return
  lo, hi = (float(v) for v in sigma_range)
  outside = [s for s in queried if not lo * (1 - 1e-6) <= s <= hi * (1 + 1e-6)]
  if not outside:
    return
  message = (f"{source} was trained for σ in [{lo:g}, {hi:g}]; {asked_by} queries it at "
             f"σ = {', '.join(f'{s:g}' for s in outside)}, outside that range")
  if prior_config is not None and prior_config.get(EXTRAPOLATION_KEY, False):
    logging.warning("%s (allowed by config.prior.%s): its answers there are extrapolations.",
                    message, EXTRAPOLATION_KEY)
    return
  raise ConfigError(message + ".", hint=f"keep σ in [{lo:g}, {hi:g}], or set "
                    f"--config.prior.{EXTRAPOLATION_KEY}=True to query it anyway.")


def check_batch(x, cond, image_size: int, channels: int, what: str) -> None:
  """Refuses a batch x that is not [B, H, W, C] of the network, or a cond not one per item."""
  if x.ndim != 4 or x.shape[1:] != (image_size, image_size, channels):
    raise ValueError(f"Expected x of shape [B, {image_size}, {image_size}, {channels}], "
                     f"got {x.shape}.")
  if cond.shape != x.shape[:1]:
    raise ValueError(f"Expected one {what} per batch item, shape {x.shape[:1]}; got {cond.shape}.")


def file_architecture(path: str, architecture: str, from_dict, expected: dict[str, Any]):
  """(file's config, metadata) of a weights file, which must hold `architecture` and agree
  with the `expected` fields (all but the compute dtype)."""
  metadata = checkpoint_io.read_metadata(path)
  if metadata.get("architecture") != architecture:
    raise checkpoint_io.CheckpointError(
        f"{path} holds a {metadata.get('architecture')!r} network, not {architecture!r}: use "
        f"the prior of that architecture (config.prior.name) or a {architecture} file.")
  file_config = from_dict(metadata["config"])
  clashes = {k: (v, getattr(file_config, k)) for k, v in expected.items()
             if k != "dtype" and v != getattr(file_config, k)}
  if clashes:
    listed = ", ".join(f"{k}={a} (file: {b})" for k, (a, b) in clashes.items())
    shape = lambda c: f"{c.image_size}×{c.image_size}×{c.channels}"
    if {"image_size", "channels"} & set(clashes) and hasattr(file_config, "channels"):
      wanted = dataclasses.replace(file_config, **{k: expected[k] for k in
                                                   ("image_size", "channels") if k in expected})
      raise checkpoint_io.CheckpointError(
          f"{path} holds a network for {shape(file_config)} images, but this config's data "
          f"are {shape(wanted)} images ({listed}).",
          hint="use weights trained on this dataset (config.prior.weights), or the config of "
               "the dataset these weights were trained on.")
    raise checkpoint_io.CheckpointError(
        f"{path} was written for {file_config}, which clashes with the prior config: {listed}")
  return file_config, metadata


def explicit_fields(prior_config, fields) -> dict[str, Any]:
  """The architecture `fields` a prior config sets explicitly (None means 'not set');
  sequences become tuples, as the frozen config dataclasses hold them."""
  out = {k: prior_config.get(k) for k in fields if prior_config.get(k) is not None}
  return {k: tuple(v) if isinstance(v, list) else v for k, v in out.items()}


def preset_config(prior_config, presets, fields, what: str):
  """A network config from `prior_config`: its 'dataset' preset, then explicit fields."""
  dataset = prior_config["dataset"]
  if dataset not in presets:
    raise ConfigError(f"Unknown {what} dataset preset {dataset!r}; known: {sorted(presets)}.")
  return presets[dataset](**explicit_fields(prior_config, fields))
