"""A compact score network conditioned on σ itself: a small UNet for fast CPU training.

The NCSN port (`ncsn.py`) sees an integer level, so its weights serve one σ ladder. This
network takes σ as a real number, so the same weights serve any ladder, any number of
levels and any steps per level, which is what lets a separation choose its schedule on
held-out data. It follows what NCSNv2 (Song & Ermon 2020) and score_sde established:

- output scaled by 1/σ: the network predicts −ε (the noise direction), and the score is
  that over σ, so one set of weights covers σ from 0.005 to ~17 without learning the 1/σ;
- the input is centred and scaled by 1/√(σ² + ¼) (¼ ≈ the variance of [0,1] data taken as
  ±½), so every σ feeds the first layer activations of about unit scale;
- σ enters through a sinusoidal embedding of log σ and an MLP, added per channel inside
  every residual block (as score_sde's DDPM/NCSN++ networks add their time embedding);
- σ_max is chosen from the data: the largest pairwise L2 distance between MNIST training
  images is 16.88, so training draws log σ uniformly on [σ_min, 17] (configs).

Shapes: NHWC. Resolution halves at each entry of `widths` after the first (28 → 14 → 7 for
MNIST), with one residual block per resolution on the way down and up and a concatenated
skip connection, the cheapest layout that keeps a 7×7 receptive core; early downsampling
and moderate widths matter more on a 2-core CPU than on a GPU (docs/score_unet.md has the
measured throughput of the candidates).

    model = ScoreUNet(ScoreUNetConfig.mnist(), rngs=nnx.Rngs(0))
    score = model(x, sigma)            # x [B,H,W,C] in [0,1], sigma [B] > 0

`load(prior_config, schedule)` builds the sampler's `Prior`: level i of the schedule is
queried at σ_i; a ladder outside the trained σ range is refused (base.check_sigmas).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from basis_jax.files import data_formats

from basis_jax.priors import likelihood

from basis_jax import overview
from basis_jax.errors import ConfigError
from basis_jax.priors import base, network_spec
from basis_jax.priors.base import Prior

ARCHITECTURE = "score_unet"
_DTYPES = {None: None, "float32": jnp.float32, "bfloat16": jnp.bfloat16}
CIFAR10_WIDTHS = (32, 64, 128)
_DATA_VARIANCE = 0.25  # Of [0,1] images centred at ½, taken as ±½ (a bound, not a fit).


@dataclasses.dataclass(frozen=True)
class ScoreUNetConfig:
  """Static architecture settings. `dtype` is the compute dtype (None: float32)."""

  channels: int = 1
  image_size: int = 28
  widths: tuple[int, ...] = (32, 64, 64)  # Channels per resolution, full size first.
  embed_dim: int = 64  # Width of the σ embedding.
  groups: int = 8  # GroupNorm groups (must divide every width).
  dtype: str | None = None

  def __post_init__(self):
    object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
    for name in ("channels", "image_size", "embed_dim", "groups"):
      value = getattr(self, name)
      if int(value) != value or value < 1:
        raise ConfigError(f"ScoreUNetConfig.{name} must be a positive integer, got {value!r}.")
    if not self.widths or min(self.widths) < 1:
      raise ConfigError(f"ScoreUNetConfig.widths must be positive integers, got {self.widths}.")
    factor = 2 ** (len(self.widths) - 1)
    if self.image_size % factor:
      raise ConfigError(f"image_size {self.image_size} is not divisible by {factor}, the "
                        f"downsampling of {len(self.widths)} resolutions.")
    if any(w % self.groups for w in self.widths):
      raise ConfigError(f"groups={self.groups} must divide every width {self.widths}.")
    if self.dtype not in _DTYPES:
      raise ConfigError(f"dtype must be one of {sorted(map(str, _DTYPES))}, got {self.dtype!r}.")

  @classmethod
  def mnist(cls, **overrides) -> ScoreUNetConfig:
    return cls(**{"channels": 1, "image_size": 28, **overrides})

  @classmethod
  def cifar10(cls, **overrides) -> ScoreUNetConfig:
    """3×32×32; widths chosen by measured training throughput (configs/
    train_score_unet_cifar10.py says which and why)."""
    return cls(**{"channels": 3, "image_size": 32, "widths": CIFAR10_WIDTHS, **overrides})

  @classmethod
  def from_dict(cls, d) -> ScoreUNetConfig:
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dict(d).items() if k in fields})

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["widths"] = list(self.widths)
    return d


def sigma_embedding(sigma, dim: int):
  """Sinusoids of log σ at frequencies geometric from 1/4 to 32 rad per unit log σ."""
  freqs = jnp.exp(jnp.linspace(math.log(0.25), math.log(32.0), dim // 2))
  angles = jnp.log(sigma)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def _conv(i: int, o: int, rngs: nnx.Rngs, dtype, kernel: int = 3, stride: int = 1,
          zero: bool = False) -> nnx.Conv:
  init = (nnx.initializers.zeros if zero
          else nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform"))
  return nnx.Conv(i, o, (kernel, kernel), strides=stride, padding="SAME", kernel_init=init,
                  dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


def _phase_kernels(kernel, axis):
  """A 3-tap kernel axis seen from a 2×-nearest-upsampled input, per output phase: phase 0
  reads input rows (p−1, p) with taps (w0, w1 + w2), phase 1 rows (p, p+1) with
  (w0 + w1, w2)."""
  w0, w1, w2 = jnp.split(kernel, 3, axis)
  return jnp.concatenate([w0, w1 + w2], axis), jnp.concatenate([w0 + w1, w2], axis)


def resize_then_conv(layer: nnx.Conv, x):
  """The plain form of `upsample_conv`: `layer` on the 2× nearest-neighbour resize of x
  (what the network computed before; kept as the reference for tests and the benchmark)."""
  b, h, w, c = x.shape
  return layer(jax.image.resize(x, (b, 2 * h, 2 * w, c), "nearest"))


def upsample_conv(layer: nnx.Conv, x):
  """`layer` (a 3×3 'SAME' conv) applied to the 2× nearest-neighbour upsampling of x,
  computed at x's resolution: each of the four output phases (row and column parity) is a
  2×2 conv of x with merged taps, and the phases are interleaved. The same linear map as
  resize-then-conv to float rounding (~1e-6 relative; tested), with 16 instead of 36
  multiplies per input pixel and no upsampled image. XLA:CPU, the shipped network: forward
  of 500 images on two CPU devices 1,349 → 1,212 ms, training step −2 to −5 %
  (docs/score_unet.md).
  """
  kernel = layer.kernel[...]
  dtype = layer.dtype or x.dtype
  b, h, w, _ = x.shape
  x = x.astype(dtype)
  phases = []
  for a, rows in enumerate(_phase_kernels(kernel, 0)):
    for c, taps in enumerate(_phase_kernels(rows, 1)):
      pad = ((1, 0) if a == 0 else (0, 1), (1, 0) if c == 0 else (0, 1))
      phases.append(jax.lax.conv_general_dilated(
          x, taps.astype(dtype), (1, 1), pad,
          dimension_numbers=("NHWC", "HWIO", "NHWC")))
  d = kernel.shape[-1]
  # phases[2a + c][:, p, q] is the output at (2p + a, 2q + c).
  out = jnp.stack(phases, axis=3).reshape(b, h, w, 2, 2, d).transpose(0, 1, 3, 2, 4, 5)
  out = out.reshape(b, 2 * h, 2 * w, d)
  return out + layer.bias[...].astype(dtype) if layer.bias is not None else out


class ResBlock(nnx.Module):
  """GroupNorm → SiLU → conv, + σ embedding, GroupNorm → SiLU → conv (zero-init), + skip."""

  def __init__(self, i: int, o: int, embed: int, groups: int, dtype, rngs: nnx.Rngs):
    self.norm1 = nnx.GroupNorm(i, num_groups=groups, rngs=rngs)
    self.conv1 = _conv(i, o, rngs, dtype)
    self.embed = nnx.Linear(embed, o, rngs=rngs)
    self.norm2 = nnx.GroupNorm(o, num_groups=groups, rngs=rngs)
    self.conv2 = _conv(o, o, rngs, dtype, zero=True)
    self.skip = _conv(i, o, rngs, dtype, kernel=1) if i != o else None

  def __call__(self, x, emb):
    h = self.conv1(jax.nn.silu(self.norm1(x)))
    h = h + self.embed(emb)[:, None, None, :].astype(h.dtype)
    h = self.conv2(jax.nn.silu(self.norm2(h)))
    return h + (self.skip(x) if self.skip is not None else x)


class ScoreUNet(nnx.Module):
  """s(x, σ) = f(c_in(σ)·(x − ½), log σ) / σ with f a small UNet (see the module doc)."""

  def __init__(self, config: ScoreUNetConfig, *, rngs: nnx.Rngs):
    self.config = config
    w, e, g, dt = config.widths, config.embed_dim, config.groups, _DTYPES[config.dtype]
    self.embed1 = nnx.Linear(e, 2 * e, rngs=rngs)
    self.embed2 = nnx.Linear(2 * e, 2 * e, rngs=rngs)
    block = lambda i, o: ResBlock(i, o, 2 * e, g, dt, rngs)
    self.begin_conv = _conv(config.channels, w[0], rngs, dt)
    self.down_blocks = nnx.List([block(w[max(r - 1, 0)], w[r]) for r in range(len(w))])
    self.downsample = nnx.List([_conv(w[r], w[r], rngs, dt, stride=2)
                                for r in range(len(w) - 1)])
    self.mid_block = block(w[-1], w[-1])
    self.up_blocks = nnx.List([block(w[r] + (w[r + 1] if r + 1 < len(w) else w[r]), w[r])
                               for r in reversed(range(len(w)))])
    self.upsample = nnx.List([_conv(w[r + 1], w[r + 1], rngs, dt)
                              for r in reversed(range(len(w) - 1))])
    self.end_norm = nnx.GroupNorm(w[0], num_groups=g, rngs=rngs)
    self.end_conv = _conv(w[0], config.channels, rngs, dt, zero=True)

  def __call__(self, x, sigma):
    """Score at noise levels `sigma` [B] (> 0) for `x` [B,H,W,C]; float32 [B,H,W,C]."""
    cfg = self.config
    sigma = jnp.asarray(sigma, jnp.float32)
    base.check_batch(x, sigma, cfg.image_size, cfg.channels, "σ")
    emb = self.embed2(jax.nn.silu(self.embed1(sigma_embedding(sigma, cfg.embed_dim))))
    c_in = jax.lax.rsqrt(jnp.square(sigma) + _DATA_VARIANCE)[:, None, None, None]
    h = (x.astype(jnp.float32) - 0.5) * c_in
    dt = _DTYPES[cfg.dtype]
    if dt is not None:
      h, emb = h.astype(dt), emb.astype(dt)
    h = self.begin_conv(h)
    skips = []
    for r, blk in enumerate(self.down_blocks):
      h = blk(h, emb)
      skips.append(h)
      if r < len(self.downsample):
        h = self.downsample[r](h)
    h = self.mid_block(h, emb)
    for j, blk in enumerate(self.up_blocks):
      h = blk(jnp.concatenate([h, skips.pop()], axis=-1), emb)
      if j < len(self.upsample):
        h = upsample_conv(self.upsample[j], h)  # = conv(2× nearest resize of h).
    out = self.end_conv(jax.nn.silu(self.end_norm(h))).astype(jnp.float32)
    return out / sigma[:, None, None, None]


count_params = overview.count_params


def build(config: ScoreUNetConfig, seed: int = 0) -> ScoreUNet:
  return ScoreUNet(config, rngs=nnx.Rngs(seed))


def abstract_params(config: ScoreUNetConfig):
  """(graphdef, abstract nnx.State of Params) without allocating the weights."""
  return nnx.split(nnx.eval_shape(lambda: build(config)), nnx.Param)


@functools.lru_cache(maxsize=16)
def make_score_fn(graphdef):
  """score_fn(params, x, sigma) with σ scalar or [B] (broadcast to the batch)."""

  def score_fn(params, x, sigma):
    sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), x.shape[:1])
    return nnx.merge(graphdef, params)(x, sigma)

  return score_fn


NETWORK = network_spec.ScoreNetwork(
    architecture=ARCHITECTURE, conditioning="sigma", config_class=ScoreUNetConfig,
    presets={"mnist": ScoreUNetConfig.mnist, "cifar10": ScoreUNetConfig.cifar10},
    fields=("channels", "image_size", "widths", "embed_dim", "groups", "dtype"), build=build,
    abstract_params=abstract_params, make_score_fn=make_score_fn, weights_stem=ARCHITECTURE)
load_weights = NETWORK.load_weights


def shipped_weights(dataset: str) -> str | None:
  """The package's trained weights for `dataset` (basis_jax/weights/score_unet_<dataset>.npz)."""
  return NETWORK.shipped_weights(dataset)



# The fields of config.prior this loader reads (configs/score_unet_common.unet_prior writes
# them with their defaults; architecture fields left None come from the weights file).
REQUIRED_FIELDS = ("dataset", "weights", "use_ema", "seed", "allow_random_weights",
                   "allow_sigma_extrapolation", "likelihood")


def load(prior_config, schedule=None) -> Prior:
  """The score_unet prior of `config.prior` (fields: weights, dataset, use_ema, dtype, seed,
  allow_random_weights). Level i of `schedule` is queried at σ_i.

  weights: a file from `experiments.train` with a score_unet config; empty takes the
  shipped weights for the dataset preset.
  """
  if schedule is None:
    raise ConfigError("The score_unet prior is conditioned on σ and needs the schedule.")
  base.require_fields(prior_config, REQUIRED_FIELDS, "configs/score_unet_common.unet_prior")
  config, graphdef, params, metadata, weights = NETWORK.load_section(
      prior_config, shipped=shipped_weights(prior_config["dataset"]), name=ARCHITECTURE,
      ways="train weights with `python -m experiments.train "
           f"--config=configs/train_score_unet_{prior_config['dataset']}.py` "
           "(WORKDIR/weights.npz)")
  if weights:
    base.check_sigmas(schedule.sigmas, weights, sigma_range=metadata.get("sigma_range"),
                      prior_config=prior_config)
  net_score = make_score_fn(graphdef)
  score_fn = NETWORK.score_at_levels(graphdef, schedule.sigmas)

  return Prior(name=ARCHITECTURE, score_fn=score_fn, params=params,
               image_shape=(config.image_size, config.image_size, config.channels),
               num_levels=None,
               log_density_fn=likelihood.log_density_from_config(net_score, prior_config,
                                                                 weights),
               weights_digest=data_formats.file_digest(weights) if weights else None)
