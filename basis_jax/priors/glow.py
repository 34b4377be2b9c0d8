"""Glow as a BASIS prior: its data space, its weights files, `load`.

The network itself is in glow_model.py (re-exported here, so `glow.GlowConfig`,
`glow.create`, ... read as before); this module is what a separation run sees: one
parameter set per σ, the score and log-density in [0, 1] pixels, and the map from the
dataset's images to the ones the Glow was trained on (`PaddedSpace`, BASIS's glow32).
"""

from __future__ import annotations

import dataclasses
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from basis_jax.files import checkpoint_io, data_formats, sharding

from basis_jax import errors
from basis_jax.priors import base
from basis_jax.priors.base import Prior, _identity_level
from basis_jax.priors.glow_model import (  # noqa: F401  # pylint: disable=unused-import
    Glow, GlowConfig, Level, create, dequantize, is_modulation_parameter,
    log_prob_to_bits_per_dim, make_log_prob_fn, make_score_fn, modulation_mask, select_level,
    stack_states, widen)


# -- the data space, weights files and the BASIS prior -------------------------------------


@dataclasses.dataclass(frozen=True)
class PaddedSpace(base.DataSpace):
  """Dataset images zero-padded (centred) to the model's size and tiled over its channels.

  BASIS trains its Glow on MNIST as 32×32×3 (28×28×1 padded by 2 pixels, grey repeated
  three times: "glow32"); samples come back cropped and channel-averaged, so nothing
  downstream scores the border.
  """

  dataset_shape: tuple[int, int, int]
  model_shape: tuple[int, int, int]

  def __post_init__(self):
    (h, w, c), (mh, mw, mc) = self.dataset_shape, self.model_shape
    if h > mh or w > mw or (mh - h) % 2 or (mw - w) % 2 or c not in (1, mc):
      raise errors.ConfigError(
          f"Dataset images of shape {self.dataset_shape} cannot be padded to the Glow's "
          f"{self.model_shape} (needs an even margin and 1 or {mc} channels).")

  def data_shape(self, image_shape):
    return self.dataset_shape

  def _margins(self):
    return ((self.model_shape[0] - self.dataset_shape[0]) // 2,
            (self.model_shape[1] - self.dataset_shape[1]) // 2)

  def to_prior(self, images):
    images = np.asarray(images)
    if images.shape[-3:] != self.dataset_shape:
      raise errors.ConfigError(f"Expected images [..., {self.dataset_shape}], got {images.shape}.")
    top, left = self._margins()
    pad = [(0, 0)] * (images.ndim - 3) + [(top, top), (left, left), (0, 0)]
    return np.repeat(np.pad(images, pad), self.model_shape[2] // self.dataset_shape[2], axis=-1)

  def from_prior(self, images):
    images = np.asarray(images)
    top, left = self._margins()
    h, w, c = self.dataset_shape
    crop = images[..., top:top + h, left:left + w, :]
    return crop.mean(axis=-1, keepdims=True, dtype=np.float32) if c == 1 else crop


def data_space(model_config: GlowConfig, dataset_shape=None) -> base.DataSpace:
  """The map from dataset images of `dataset_shape` (None: the model's own) to the model's."""
  if dataset_shape is None or tuple(dataset_shape) == model_config.image_shape:
    return base.DataSpace()
  return PaddedSpace(tuple(int(d) for d in dataset_shape), model_config.image_shape)


@dataclasses.dataclass(frozen=True)
class GlowWeights:
  """A weights file read back: one state, or a stack of per-σ states (`sigmas` set)."""

  config: GlowConfig
  graphdef: object
  state: nnx.State
  sigmas: tuple[float, ...] | None  # Level order, largest σ first; None: one clean model.
  metadata: dict
  # Which parameters differ per σ ('all', or 'modulation': the rest is stored once).
  per_sigma: str = "all"


def config_to_json(config: GlowConfig) -> dict:
  values = dataclasses.asdict(config)
  values["image_shape"] = list(values["image_shape"])
  return values


def config_from_json(values: dict) -> GlowConfig:
  """The inverse of `config_to_json` (a file's `glow_config` metadata)."""
  values = dict(values)
  values["image_shape"] = tuple(values["image_shape"])
  return GlowConfig(**values)


# What a per-σ file stacks: every parameter, or only the modulation parameters
# (`glow_model.is_modulation_parameter`; the rest, shared by every σ, is stored once).
PER_SIGMA = ("all", "modulation")


def save_weights(path: str, config: GlowConfig, state, sigmas=None, *, float16: bool = False,
                 per_sigma: str = "all", **metadata) -> None:
  """Writes one state, or per-σ states stacked on a leading axis with their `sigmas`
  (`float16`: stored in 16 bits, as the package ships them; read back as float32).
  `per_sigma='modulation'`: `state` is `stack_states(states, shared=...)` with every
  parameter but the modulation ones stored once (leading axis 1)."""
  if per_sigma not in PER_SIGMA:
    raise ValueError(f"per_sigma must be one of {PER_SIGMA}, got {per_sigma!r}.")
  meta = {"architecture": "glow", "glow_config": config_to_json(config), **metadata}
  if sigmas is not None:
    meta["sigmas"] = [float(s) for s in sigmas]
    meta["per_sigma"] = per_sigma
  checkpoint_io.save_params(path, state, meta, float16=float16)


def shipped_weights(dataset: str | None) -> str | None:
  """The package's trained Glow for `dataset` (basis_jax/weights/glow_<dataset>.npz), if any."""
  if not dataset:
    return None
  path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "weights",
                      f"glow_{dataset}.npz")
  return path if os.path.exists(path) else None


def load_weights(path: str) -> GlowWeights:
  """Reads a file written by `save_weights` or `convert_weights.glow`, strictly checked."""
  metadata = checkpoint_io.read_metadata(path)
  if metadata.get("architecture") != "glow" or "glow_config" not in metadata:
    raise ValueError(f"{path} is not a Glow weights file (architecture "
                     f"{metadata.get('architecture')!r}).")
  config = config_from_json(metadata["glow_config"])
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Glow(config)))
  sigmas = metadata.get("sigmas")
  per_sigma = metadata.get("per_sigma", "all")
  if sigmas is not None:
    if per_sigma not in PER_SIGMA:
      raise ValueError(f"{path}: unknown per_sigma {per_sigma!r} (this version reads "
                       f"{PER_SIGMA}).")
    sigmas = tuple(float(s) for s in sigmas)
    per_level = (modulation_mask(abstract) if per_sigma == "modulation"
                 else jax.tree.map(lambda _: True, abstract))
    abstract = jax.tree.map(
        lambda a, stacked: jax.ShapeDtypeStruct(
            ((len(sigmas) if stacked else 1),) + tuple(a.shape), a.dtype), abstract, per_level)
  state, metadata = checkpoint_io.load_params(path, abstract)
  return GlowWeights(config, graphdef, state, sigmas, metadata, per_sigma)


def image_log_probs(weights: GlowWeights, state, images: np.ndarray, *, seed: int,
                    chunk: int = 250, sigma: float = 0.0) -> np.ndarray:
  """log p(x) in nats per image under `state` (one model of `weights`) of dataset images
  [N, H, W, C] in [0, 1], quantised to the model's bits and dequantised with one draw from
  `seed` (plus N(0, σ²) when σ > 0). The draw is made for the whole set at once, so an
  image's value does not depend on `chunk` (images per compiled call)."""
  space = data_space(weights.config, images.shape[1:])
  k_deq, k_noise = jax.random.split(jax.random.key(seed))
  x = dequantize(jnp.asarray(space.to_prior(np.clip(images, 0.0, 1.0))), k_deq,
                 weights.config.n_bits)
  x = np.asarray(x + sigma * jax.random.normal(k_noise, x.shape))
  log_prob = jax.jit(make_log_prob_fn(weights.graphdef))
  return sharding.map_chunks(lambda part: log_prob(state, part), [x], chunk)


def _check_architecture(path: str, file_config: GlowConfig, prior_config) -> None:
  """Architecture fields set in `config.prior` must agree with the weights file."""
  values = config_to_json(file_config)
  clashes = []
  for name, value in values.items():
    wanted = prior_config.get(name)
    if wanted is None:
      continue
    wanted = list(wanted) if name == "image_shape" else wanted
    if wanted != value:
      clashes.append(f"{name}={wanted} (file: {value})")
  if clashes:
    raise errors.ConfigError(
        f"{path} holds a Glow of another architecture than config.prior sets: "
        f"{', '.join(clashes)}.", hint="Remove those fields from config.prior or set them "
        "to the file's values (e.g. the configs' :small variant for the small model).")


# The fields of config.prior this loader reads (configs/mnist_glow.glow_prior writes them with
# their defaults; architecture fields must agree with a weights file).
REQUIRED_FIELDS = ("weights", "dataset", "seed", "allow_random_weights", "data_shape")


def load(prior_config, schedule=None) -> Prior:
  """The Glow prior of `config.prior`, one parameter set per σ level.

  Fields: weights (a file from `experiments/train_glow.py`: per-σ states whose σ ladder
  must equal the schedule's; a single clean model, e.g. a converted one, is used at every
  level; empty: the package's Glow for `dataset` when it ships one (`shipped_weights`),
  else random weights from `seed` and the architecture fields of `GlowConfig`, only with
  allow_random_weights=True).

  The prior works on images in [0, 1] and shifts them by −½ into Glow's data space
  [−½, ½] inside its score: a shift does not change the score, and keeping it out of
  `to_prior` keeps that map linear, so mixtures map like components (base.DataSpace).
  data_shape: the dataset's (H, W, C) when it differs from the model's (MNIST's
  (28, 28, 1) for a 32×32×3 Glow, see `PaddedSpace`). Langevin starts by default from
  N(½, 1), the reference's N(0, 1) in [−½, ½].
  """
  if schedule is None:
    raise ValueError("The Glow prior needs the schedule (one parameter set per σ level).")
  num_levels = schedule.num_levels
  base.require_fields(prior_config, REQUIRED_FIELDS, "configs/mnist_glow.glow_prior")
  path = prior_config["weights"] or shipped_weights(prior_config["dataset"])
  if path:
    weights = load_weights(path)
    config, graphdef = weights.config, weights.graphdef
    _check_architecture(path, weights.config, prior_config)
    if weights.sigmas is None:
      # One clean model (e.g. converted) serves every level; it is not copied L times.
      logging.warning(
          "Glow prior: %s holds one clean model (no per-σ fine-tuning); it serves all %d "
          "noise levels, so its scores ignore σ (BASIS fine-tunes one Glow per σ, "
          "experiments/train_glow.py).", path, num_levels)
      params, select = weights.state, _identity_level
      num_levels = None  # Any number of levels.
    else:
      base.check_sigmas(schedule.sigmas, path, ladder=weights.sigmas)
      params, select = weights.state, select_level  # Sliced once per level by the sampler.
      num_levels = len(weights.sigmas)
  else:
    base.require_random_weights_allowed(
        prior_config, "Glow", "convert a trained Glow (python -m convert_weights.glow "
        "--checkpoint=glow.pt --out=glow.npz) or train and fine-tune one (python -m "
        "experiments.train_glow ..., which writes WORKDIR/glow_sigmas.npz)")
    config = GlowConfig.from_config(prior_config)
    graphdef, params = nnx.split(Glow(config, seed=prior_config["seed"]))
    select, num_levels = _identity_level, None  # One model for any number of levels.
  log_prob_fn = make_log_prob_fn(graphdef)

  def log_density_fn(level_state, x, level):
    del level  # The state is already that of the level (see `select_level`).
    return log_prob_fn(level_state, x - 0.5)

  def score_fn(level_state, x, level):
    return jax.grad(lambda x: jnp.sum(log_density_fn(level_state, x, level)))(x)

  return Prior(name="glow", score_fn=score_fn, params=params, image_shape=config.image_shape,
               num_levels=num_levels, select_level=select, log_density_fn=log_density_fn,
               exact_log_density=True,
               data_space=data_space(config, prior_config["data_shape"]),
               default_init={"init": "normal", "init_mean": 0.5},
               weights_digest=data_formats.file_digest(path) if path else None)
