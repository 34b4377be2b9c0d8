"""NCSN prior: the noise-conditional score network `CondRefineNetDilated` (Song & Ermon 2019).

A Flax NNX port of the network BASIS uses as its NCSN prior, NHWC, numerically matching
the published PyTorch model (see docs/ncsn.md for the parity numbers). It maps
(x ∈ [0,1]^{H×W×C}, integer level y) to the score ∇_x log p_{σ_y}(x) in the data space of
x; level 0 is the largest σ.

    model = CondRefineNetDilated(NCSNConfig.mnist(), rngs=nnx.Rngs(0))
    score = model(x, levels)            # x [B,H,W,C] in [0,1], levels int [B]

`load(prior_config)` builds the `Prior` the sampler uses, with weights from a project
checkpoint (`basis_jax.files.checkpoint_io`): converted from the published `checkpoint.pth`
(`python -m convert_weights.ncsn`) or written by `experiments/train.py`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax.numpy as jnp
from flax import nnx

from basis_jax.files import checkpoint_io, data_formats

from basis_jax import overview
from basis_jax.priors import base, network_spec
from basis_jax.priors.base import Prior
from basis_jax.priors.ncsn_layers import (CondInstanceNormPlus, CondRefineBlock, ResidualBlock,
                                          conv, elu)

ARCHITECTURE = "ncsn_cond_refinenet_dilated"
_DTYPES = {None: None, "float32": jnp.float32, "bfloat16": jnp.bfloat16,
           "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class NCSNConfig:
  """Static architecture settings. `dtype` is the compute dtype (None: float32)."""

  channels: int = 1
  image_size: int = 28
  ngf: int = 64
  num_classes: int = 10
  dtype: str | None = None

  def __post_init__(self):
    for name in ("channels", "image_size", "ngf", "num_classes"):
      value = getattr(self, name)
      if int(value) != value or value < 1:
        raise ValueError(f"NCSNConfig.{name} must be a positive integer, got {value!r}.")
    if self.image_size % 2:
      raise ValueError(f"image_size must be even (one 2× downsampling), got {self.image_size}.")
    if self.dtype not in _DTYPES:
      raise ValueError(f"dtype must be one of {sorted(map(str, _DTYPES))}, got {self.dtype!r}.")

  @classmethod
  def mnist(cls, **overrides) -> NCSNConfig:
    return cls(**{"channels": 1, "image_size": 28, "ngf": 64, **overrides})

  @classmethod
  def cifar10(cls, **overrides) -> NCSNConfig:
    return cls(**{"channels": 3, "image_size": 32, "ngf": 128, **overrides})

  @classmethod
  def from_dict(cls, d) -> NCSNConfig:
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dict(d).items() if k in fields})

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


class CondRefineNetDilated(nnx.Module):
  """The NCSN score network: 4 residual stages (one 2× downsampling, then dilations 2 and 4
  at constant resolution) and a 4-stage RefineNet decoder back to full size."""

  def __init__(self, config: NCSNConfig, *, rngs: nnx.Rngs):
    self.config = config
    f, c, k = config.ngf, config.channels, config.num_classes
    dt = _DTYPES[config.dtype]
    block = lambda i, o, **kw: ResidualBlock(i, o, k, dtype=dt, rngs=rngs, **kw)
    self.begin_conv = conv(c, f, dtype=dt, rngs=rngs)
    self.normalizer = CondInstanceNormPlus(f, k, rngs=rngs)
    self.end_conv = conv(f, c, dtype=dt, rngs=rngs)
    self.res1 = nnx.List([block(f, f), block(f, f)])
    self.res2 = nnx.List([block(f, 2 * f, resample="down"), block(2 * f, 2 * f)])
    self.res3 = nnx.List([block(2 * f, 2 * f, resample="down", dilation=2),
                          block(2 * f, 2 * f, dilation=2)])
    self.res4 = nnx.List([block(2 * f, 2 * f, resample="down", dilation=4),
                          block(2 * f, 2 * f, dilation=4)])
    refine = lambda i, o, **kw: CondRefineBlock(i, o, k, dtype=dt, rngs=rngs, **kw)
    self.refine1 = refine([2 * f], 2 * f, start=True)
    self.refine2 = refine([2 * f, 2 * f], 2 * f)
    self.refine3 = refine([2 * f, 2 * f], f)
    self.refine4 = refine([f, f], f, end=True)

  def __call__(self, x, y):
    """Score at levels `y` [B] (int) for `x` [B,H,W,C] in [0,1]; returns float32 [B,H,W,C]."""
    cfg = self.config
    y = jnp.asarray(y, jnp.int32)
    base.check_batch(x, y, cfg.image_size, cfg.channels, "level")
    h = 2.0 * x.astype(jnp.float32) - 1.0
    dt = _DTYPES[cfg.dtype]
    if dt is not None:
      h = h.astype(dt)
    h = self.begin_conv(h)
    layers = []
    for stage in (self.res1, self.res2, self.res3, self.res4):
      for blk in stage:
        h = blk(h, y)
      layers.append(h)
    layer1, layer2, layer3, layer4 = layers
    size = lambda t: t.shape[1:3]
    ref = self.refine1([layer4], y, size(layer4))
    ref = self.refine2([layer3, ref], y, size(layer3))
    ref = self.refine3([layer2, ref], y, size(layer2))
    out = self.refine4([layer1, ref], y, size(layer1))
    out = self.end_conv(elu(self.normalizer(out, y)))
    return out.astype(jnp.float32)


count_params = overview.count_params


def build(config: NCSNConfig, seed: int = 0) -> CondRefineNetDilated:
  return CondRefineNetDilated(config, rngs=nnx.Rngs(seed))


def abstract_params(config: NCSNConfig):
  """(graphdef, abstract nnx.State of Params) without allocating the weights."""
  model = nnx.eval_shape(lambda: build(config))
  graphdef, params = nnx.split(model, nnx.Param)
  return graphdef, params


@functools.lru_cache(maxsize=16)
def make_score_fn(graphdef):
  """score_fn(params, x, level) for the sampler; `level` scalar or [B], broadcast to B.

  Cached per graphdef: one function object per architecture lets every `jax.jit` of it
  share compiled executables.
  """

  def score_fn(params, x, level):
    model = nnx.merge(graphdef, params)
    levels = jnp.broadcast_to(jnp.asarray(level, jnp.int32), x.shape[:1])
    return model(x, levels)

  return score_fn


NETWORK = network_spec.ScoreNetwork(
    architecture=ARCHITECTURE, conditioning="level", config_class=NCSNConfig,
    presets={"mnist": NCSNConfig.mnist, "cifar10": NCSNConfig.cifar10},
    fields=("channels", "image_size", "ngf", "num_classes", "dtype"), build=build,
    abstract_params=abstract_params, make_score_fn=make_score_fn, weights_stem="ncsn")
load_weights = NETWORK.load_weights


def check_sigmas(path: str, sigmas) -> None:
  """Level i of the network was trained at the file's σ_i only (the ladder the trainer and
  the converter record): the one σ policy, `base.check_sigmas`."""
  trained = checkpoint_io.read_metadata(path).get("sigmas")
  base.check_sigmas(sigmas, path, ladder=trained)


def shipped_weights(dataset: str) -> str | None:
  """The package's default weights for `dataset` (basis_jax/weights/ncsn_<dataset>.npz)."""
  return NETWORK.shipped_weights(dataset)


# The fields of config.prior this loader reads (configs/mnist_ncsn.ncsn_prior writes them with
# their defaults; architecture fields left None come from the weights file).
REQUIRED_FIELDS = ("dataset", "weights", "use_ema", "seed", "allow_random_weights")


def load(prior_config, schedule=None) -> Prior:
  """The NCSN prior of `config.prior` (fields: weights, seed, dataset, ngf, ..., use_ema).

  weights: a project weights file; empty/None takes the shipped default for the dataset
  preset when the package has one, else a random initialisation, only with
  allow_random_weights=True.
  """
  base.require_fields(prior_config, REQUIRED_FIELDS, "configs/mnist_ncsn.ncsn_prior")
  dataset = prior_config["dataset"]
  shipped = {"mnist": "configs/mnist_unet.py", "cifar10": "configs/cifar_unet.py"}
  config, graphdef, params, _, weights = NETWORK.load_section(
      prior_config, shipped=shipped_weights(dataset), name="NCSN",
      ways=(f"run the project's own {dataset} prior instead ({shipped[dataset]}), "
            if dataset in shipped else "") +
      "convert the published checkpoint (python -m convert_weights.ncsn "
      "--checkpoint=checkpoint.pth --out=weights.npz) or train one (python -m "
      "experiments.train ..., which writes WORKDIR/weights.npz)")
  if schedule is not None and schedule.num_levels != config.num_classes:
    raise ValueError(f"The schedule has {schedule.num_levels} levels but the NCSN network "
                     f"was built for {config.num_classes} noise levels.")
  if weights and schedule is not None:
    check_sigmas(weights, schedule.sigmas)
  return Prior(name="ncsn", score_fn=NETWORK.score_at_levels(graphdef, None), params=params,
               image_shape=(config.image_size, config.image_size, config.channels),
               num_levels=config.num_classes,
               weights_digest=data_formats.file_digest(weights) if weights else None)
