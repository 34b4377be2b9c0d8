"""Building blocks of the NCSN score network (`CondRefineNetDilated`), NHWC.

Every block takes the integer noise level `y` [B] next to its activations, because each
normalisation is conditional on it. Attribute names mirror the published PyTorch module
tree (`res1.0.conv1`, `adapt_convs.0.1_2_norm`, `crp.norms.1`, ...) so that a state-dict
key maps onto a parameter path by a fixed rule (see `convert_weights/ncsn.py`).

Parameters are float32 (`param_dtype`); `dtype` sets the compute dtype of the
convolutions (e.g. bfloat16). Normalisation statistics are always taken in float32.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Dtype = Any
_EPS = 1e-5  # PyTorch's InstanceNorm eps and the CIN++ channel-variance eps.


def _torch_bias_init(fan_in: int):
  """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default conv bias init."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def conv(in_features: int, out_features: int, kernel_size: int = 3, *, dilation: int = 1,
         use_bias: bool = True, dtype: Dtype = None, rngs: nnx.Rngs) -> nnx.Conv:
  """A stride-1 'same' convolution initialised like PyTorch's `nn.Conv2d`."""
  pad = dilation * (kernel_size // 2)
  fan_in = in_features * kernel_size * kernel_size
  return nnx.Conv(
      in_features, out_features, (kernel_size, kernel_size),
      padding=((pad, pad), (pad, pad)), kernel_dilation=dilation, use_bias=use_bias,
      dtype=dtype, param_dtype=jnp.float32,
      # kaiming_uniform(a=√5) is U(±1/√fan_in), i.e. variance scaling 1/3 (uniform).
      kernel_init=nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
      bias_init=_torch_bias_init(fan_in), rngs=rngs)


def elu(x):
  """ELU as exp(min(x, 0)) − 1 below zero.

  The same function as `jax.nn.elu` to within 6e-8 absolute (exp − 1 loses relative
  precision only where the result is below ~1e-7 in size), but XLA:CPU vectorises exp and
  not expm1: 1.3 against 2.2–4.2 ms for 50×28×28×64 on one core (BENCHMARKS.md).
  """
  return jnp.where(x > 0, x, jnp.exp(jnp.minimum(x, 0.0)) - 1.0)


def avg_pool_5x5(x):
  """5×5 stride-1 average pool with zero padding 2, dividing by 25 everywhere.

  That is PyTorch's `AvgPool2d(5, 1, 2)` with its default count_include_pad=True. The
  window sum is taken as a 5-tap sum down the columns, then along the rows: the same sum
  (up to float rounding, ~1e-7 relative), but XLA:CPU runs the two 1-D passes 1.4-5x faster
  than one 5×5 window (measured at 100×28×28×64 and 100×14×14×128; BENCHMARKS.md).
  """
  # A constant zero init lets JAX recognise a (differentiable) windowed sum.
  zero = np.zeros((), x.dtype)
  summed = jax.lax.reduce_window(x, zero, jax.lax.add, (1, 5, 1, 1), (1, 1, 1, 1),
                                 ((0, 0), (2, 2), (0, 0), (0, 0)))
  summed = jax.lax.reduce_window(summed, zero, jax.lax.add, (1, 1, 5, 1), (1, 1, 1, 1),
                                 ((0, 0), (0, 0), (2, 2), (0, 0)))
  return summed / jnp.asarray(25.0, x.dtype)


@functools.lru_cache(maxsize=None)
def _align_corners_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out, in] linear-interpolation weights with align_corners=True."""
  weights = np.zeros((out_size, in_size), np.float32)
  scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
  for o in range(out_size):
    src = o * scale
    i0 = min(int(np.floor(src)), in_size - 1)
    i1 = min(i0 + 1, in_size - 1)
    frac = src - i0
    weights[o, i0] += 1.0 - frac
    weights[o, i1] += frac
  return weights


def resize_bilinear_align_corners(x, size: tuple[int, int]):
  """Bilinear resize of [B, H, W, C] to `size` with align_corners=True.

  `jax.image.resize` uses half-pixel centres (align_corners=False), which differs from the
  reference; here the resize is two small matmuls with static weights.
  """
  in_h, in_w = x.shape[1], x.shape[2]
  out_h, out_w = size
  if (in_h, in_w) == (out_h, out_w):
    return x  # The weights would be the identity.
  wh = jnp.asarray(_align_corners_matrix(in_h, out_h), x.dtype)
  ww = jnp.asarray(_align_corners_matrix(in_w, out_w), x.dtype)
  x = jnp.einsum("oh,bhwc->bowc", wh, x)
  return jnp.einsum("pw,bowc->bopc", ww, x)


class CondInstanceNormPlus(nnx.Module):
  """Conditional instance norm++ (NCSN): instance norm plus a term restoring channel means.

  out = γ[y]·(h + α[y]·μ̃) + β[y], h the instance-normalised input and μ̃ the per-channel
  spatial means standardised across channels with the *unbiased* variance. The embedding
  rows are [γ | α | β].
  """

  def __init__(self, num_features: int, num_classes: int, *, rngs: nnx.Rngs):
    self.num_features = num_features

    def init(key, shape, dtype=jnp.float32):
      scale_shift = 1.0 + 0.02 * jax.random.normal(key, (shape[0], 2 * num_features), dtype)
      return jnp.concatenate([scale_shift, jnp.zeros((shape[0], num_features), dtype)], -1)

    self.embed = nnx.Embed(num_classes, 3 * num_features, embedding_init=init, rngs=rngs)

  def __call__(self, x, y):
    dtype = x.dtype
    x = x.astype(jnp.float32)
    means = jnp.mean(x, axis=(1, 2))  # [B, C]
    var = jnp.mean(jnp.square(x - means[:, None, None, :]), axis=(1, 2))
    inv_std = jax.lax.rsqrt(var + _EPS)
    channel_mean = jnp.mean(means, axis=-1, keepdims=True)
    channel_var = jnp.var(means, axis=-1, keepdims=True, ddof=1)
    standardised = (means - channel_mean) / jnp.sqrt(channel_var + _EPS)
    gamma, alpha, beta = jnp.split(self.embed.embedding[...][y], 3, axis=-1)
    # γ·((x − μ)/s + α·μ̃) + β folded into one per-channel scale and shift, so the pass
    # over the image is x·scale + shift (XLA:CPU: 5.2 → 2.9 ms with the ELU after it at
    # 50×28×28×64 on one core; BENCHMARKS.md).
    scale = gamma * inv_std
    shift = beta + gamma * (alpha * standardised - means * inv_std)
    out = x * scale[:, None, None, :] + shift[:, None, None, :]
    return out.astype(dtype)


def mean_pool_2x2(x):
  """The mean of the four stride-2 sub-grids (halves H and W, which must be even)."""
  return (x[:, ::2, ::2] + x[:, 1::2, ::2] + x[:, ::2, 1::2] + x[:, 1::2, 1::2]) / 4.0


class ConvMeanPool(nnx.Module):
  """A 'same' convolution, then the mean of the four stride-2 sub-grids (halves H and W).

  Computed without the full-resolution convolution, as the same linear map: a 1×1
  convolution commutes with the pool (pool first: 4× fewer multiplies); a k×k one followed
  by the pool is one stride-2 (k+1)×(k+1) convolution whose kernel is the k×k kernel summed
  at the four 2×2 offsets, / 4 (for 3×3: 16 taps at a quarter of the positions instead of
  9 at all, 2.25× fewer multiplies). Same result to float rounding (~1e-6 relative; the
  parameters are the reference's `conv.weight`/`conv.bias` unchanged). XLA:CPU, 100×28×28×64
  → 128 channels: 72.7 → 31.5 ms (3×3) and 13.0 → 5.9 ms (1×1); BENCHMARKS.md.
  """

  def __init__(self, in_features, out_features, kernel_size, *, dtype, rngs):
    self.conv = conv(in_features, out_features, kernel_size, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    if x.shape[1] % 2 or x.shape[2] % 2:
      raise ValueError(f"ConvMeanPool needs an even height and width, got {x.shape[1:3]}.")
    layer = self.conv
    kernel = layer.kernel[...]
    k = kernel.shape[0]
    if k == 1:
      return layer(mean_pool_2x2(x))
    merged = sum(jnp.pad(kernel, ((i, 1 - i), (j, 1 - j), (0, 0), (0, 0)))
                 for i in (0, 1) for j in (0, 1)) / 4.0
    dtype = layer.dtype or x.dtype
    pad = k // 2
    out = jax.lax.conv_general_dilated(
        x.astype(dtype), merged.astype(dtype), (2, 2), ((pad, pad), (pad, pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if layer.bias is not None:
      out = out + layer.bias[...].astype(dtype)
    return out


class ResidualBlock(nnx.Module):
  """`out = conv2(ELU(norm2(conv1(ELU(norm1(x)))))) + shortcut(x)`.

  resample='down' without dilation halves the resolution (ConvMeanPool); with a dilation
  it only widens the receptive field and keeps the resolution, as in the reference.
  """

  def __init__(self, in_features: int, out_features: int, num_classes: int, *,
               resample: str | None = None, dilation: int | None = None, dtype=None,
               rngs: nnx.Rngs):
    if resample not in (None, "down"):
      raise ValueError(f"resample must be None or 'down', got {resample!r}.")
    d = dilation or 1
    self.identity_shortcut = in_features == out_features and resample is None
    self.normalize1 = CondInstanceNormPlus(in_features, num_classes, rngs=rngs)
    if resample == "down":
      self.conv1 = conv(in_features, in_features, dilation=d, dtype=dtype, rngs=rngs)
      self.normalize2 = CondInstanceNormPlus(in_features, num_classes, rngs=rngs)
      if dilation is None:
        self.conv2 = ConvMeanPool(in_features, out_features, 3, dtype=dtype, rngs=rngs)
        self.shortcut = ConvMeanPool(in_features, out_features, 1, dtype=dtype, rngs=rngs)
      else:
        self.conv2 = conv(in_features, out_features, dilation=d, dtype=dtype, rngs=rngs)
        self.shortcut = conv(in_features, out_features, dilation=d, dtype=dtype, rngs=rngs)
    else:
      self.conv1 = conv(in_features, out_features, dilation=d, dtype=dtype, rngs=rngs)
      self.normalize2 = CondInstanceNormPlus(out_features, num_classes, rngs=rngs)
      self.conv2 = conv(out_features, out_features, dilation=d, dtype=dtype, rngs=rngs)
      if not self.identity_shortcut:
        kernel = 1 if dilation is None else 3
        self.shortcut = conv(in_features, out_features, kernel, dilation=d, dtype=dtype,
                             rngs=rngs)

  def __call__(self, x, y):
    h = self.conv1(elu(self.normalize1(x, y)))
    h = self.conv2(elu(self.normalize2(h, y)))
    skip = x if self.identity_shortcut else self.shortcut(x)
    return skip + h


class CondRCUBlock(nnx.Module):
  """Residual conv units: `n_blocks` × (n_stages × norm→ELU→conv3×3 without bias) + skip."""

  def __init__(self, features: int, n_blocks: int, n_stages: int, num_classes: int, *,
               dtype=None, rngs: nnx.Rngs):
    self.n_blocks, self.n_stages = n_blocks, n_stages
    for i in range(1, n_blocks + 1):
      for j in range(1, n_stages + 1):
        setattr(self, f"{i}_{j}_norm", CondInstanceNormPlus(features, num_classes, rngs=rngs))
        setattr(self, f"{i}_{j}_conv",
                conv(features, features, use_bias=False, dtype=dtype, rngs=rngs))

  def __call__(self, x, y):
    for i in range(1, self.n_blocks + 1):
      residual = x
      for j in range(1, self.n_stages + 1):
        x = getattr(self, f"{i}_{j}_norm")(x, y)
        x = getattr(self, f"{i}_{j}_conv")(elu(x))
      x = x + residual
    return x


class CondMSFBlock(nnx.Module):
  """Multi-resolution fusion: per input norm→conv3×3, resized to the output size, summed."""

  def __init__(self, in_planes: Sequence[int], features: int, num_classes: int, *,
               dtype=None, rngs: nnx.Rngs):
    self.norms = nnx.List([CondInstanceNormPlus(c, num_classes, rngs=rngs) for c in in_planes])
    self.convs = nnx.List([conv(c, features, dtype=dtype, rngs=rngs) for c in in_planes])

  def __call__(self, xs, y, size):
    total = None
    for norm, cv, x in zip(self.norms, self.convs, xs):
      h = resize_bilinear_align_corners(cv(norm(x, y)), size)
      total = h if total is None else total + h
    return total


class CondCRPBlock(nnx.Module):
  """Chained residual pooling: ELU, then `x += conv(avgpool(norm(path)))` per stage."""

  def __init__(self, features: int, n_stages: int, num_classes: int, *, dtype=None,
               rngs: nnx.Rngs):
    self.norms = nnx.List([CondInstanceNormPlus(features, num_classes, rngs=rngs)
                           for _ in range(n_stages)])
    self.convs = nnx.List([conv(features, features, use_bias=False, dtype=dtype, rngs=rngs)
                           for _ in range(n_stages)])

  def __call__(self, x, y):
    x = elu(x)
    path = x
    for norm, cv in zip(self.norms, self.convs):
      path = cv(avg_pool_5x5(norm(path, y)))
      x = x + path
    return x


class CondRefineBlock(nnx.Module):
  """RefineNet block: adapt (CondRCU per input) → fuse (MSF) → CRP → output CondRCU."""

  def __init__(self, in_planes: Sequence[int], features: int, num_classes: int, *,
               start: bool = False, end: bool = False, dtype=None, rngs: nnx.Rngs):
    self.adapt_convs = nnx.List([CondRCUBlock(c, 2, 2, num_classes, dtype=dtype, rngs=rngs)
                                 for c in in_planes])
    self.output_convs = CondRCUBlock(features, 3 if end else 1, 2, num_classes, dtype=dtype,
                                     rngs=rngs)
    self.msf = None if start else CondMSFBlock(in_planes, features, num_classes, dtype=dtype,
                                               rngs=rngs)
    self.crp = CondCRPBlock(features, 2, num_classes, dtype=dtype, rngs=rngs)

  def __call__(self, xs, y, size):
    hs = [adapt(x, y) for adapt, x in zip(self.adapt_convs, xs)]
    h = self.msf(hs, y, size) if len(hs) > 1 else hs[0]
    return self.output_convs(self.crp(h, y), y)
