"""InceptionV3 in its FID variant, for Inception Score and FID (Flax NNX, NHWC).

This is the network of TF's "inception-2015-12-05" graph as pytorch-fid ports it
(`pt_inception-2015-12-05-6726825d.pth`), so features and scores are comparable with
pytorch-fid's. Its differences from torchvision's InceptionV3: the average pools inside
the Mixed_5*/6*/7b blocks ignore the zero padding (`count_include_pad=False`, as TF does),
the last block (Mixed_7c) pools with a max instead of an average, and there are 1008
logits. Outputs: `pool` [N, 2048] (FID features) and `logits` [N, 1008] (for IS).

Input: images in [0, 1], NHWC, 1 or 3 channels. They are resized to 299x299 by bilinear
interpolation with half-pixel centres and no antialiasing, which is what pytorch-fid does
(`F.interpolate(mode='bilinear', align_corners=False)`); the original TF FID code resized
differently, so absolute numbers can differ slightly from papers that used it. Then the
range is mapped to [-1, 1].

Weights: convert pytorch-fid's file once with `python -m convert_weights.inception`, then
point `load(weights)` (or $BASIS_INCEPTION_WEIGHTS) at the `.npz`.
"""

from __future__ import annotations

import functools
import os
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from basis_jax.errors import InputFileError, MissingFileError
from basis_jax.files import sharding

INPUT_SIZE = 299
NUM_LOGITS = 1008
FEATURE_DIM = 2048
WEIGHTS_ENV = 'BASIS_INCEPTION_WEIGHTS'
DEFAULT_WEIGHTS = os.path.join('~', '.cache', 'basis_jax', 'inception_fid.npz')
TORCH_WEIGHTS_NAME = 'pt_inception-2015-12-05-6726825d.pth'
TORCH_WEIGHTS_SHA256_PREFIX = '6726825d'  # pytorch-fid names the file after its digest.
# The converted .npz records the digest of the .pth it came from under this key.
SOURCE_DIGEST_KEY = 'source_sha256'


class ConvBN(nnx.Module):
  """Convolution without bias, batch norm (eps 1e-3, inference statistics), ReLU."""

  def __init__(self, in_features: int, out_features: int, kernel_size, stride: int = 1,
               padding=0, *, rngs: nnx.Rngs):
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    self.conv = nnx.Conv(in_features, out_features, (kh, kw), strides=stride,
                         padding=((ph, ph), (pw, pw)), use_bias=False,
                         precision=jax.lax.Precision.HIGHEST, rngs=rngs)
    self.bn = nnx.BatchNorm(out_features, epsilon=1e-3, use_running_average=True,
                            rngs=rngs)

  def __call__(self, x):
    return jax.nn.relu(self.bn(self.conv(x)))


def avg_pool_3x3_exclude_pad(x):
  """3x3 stride-1 average with padding 1 that divides by the in-image count (as TF)."""
  window, strides, pad = (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
  count = jax.lax.reduce_window(jnp.ones_like(x[:1, :, :, :1]), 0.0, jax.lax.add, window,
                                strides, pad)
  return total / count


def max_pool(x, size: int = 3, stride: int = 2, padding: int = 0):
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1),
                               (1, stride, stride, 1), pad)


class InceptionA(nnx.Module):  # Mixed_5b, 5c, 5d

  def __init__(self, cin: int, pool_features: int, *, rngs: nnx.Rngs):
    self.branch1x1 = ConvBN(cin, 64, 1, rngs=rngs)
    self.branch5x5_1 = ConvBN(cin, 48, 1, rngs=rngs)
    self.branch5x5_2 = ConvBN(48, 64, 5, padding=2, rngs=rngs)
    self.branch3x3dbl_1 = ConvBN(cin, 64, 1, rngs=rngs)
    self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1, rngs=rngs)
    self.branch_pool = ConvBN(cin, pool_features, 1, rngs=rngs)

  def __call__(self, x):
    b5 = self.branch5x5_2(self.branch5x5_1(x))
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    bp = self.branch_pool(avg_pool_3x3_exclude_pad(x))
    return jnp.concatenate([self.branch1x1(x), b5, b3, bp], axis=-1)


class InceptionB(nnx.Module):  # Mixed_6a: 35x35 -> 17x17

  def __init__(self, cin: int, *, rngs: nnx.Rngs):
    self.branch3x3 = ConvBN(cin, 384, 3, stride=2, rngs=rngs)
    self.branch3x3dbl_1 = ConvBN(cin, 64, 1, rngs=rngs)
    self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2, rngs=rngs)

  def __call__(self, x):
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return jnp.concatenate([self.branch3x3(x), b3, max_pool(x)], axis=-1)


class InceptionC(nnx.Module):  # Mixed_6b..6e: factorised 7x7

  def __init__(self, cin: int, c7: int, *, rngs: nnx.Rngs):
    self.branch1x1 = ConvBN(cin, 192, 1, rngs=rngs)
    self.branch7x7_1 = ConvBN(cin, c7, 1, rngs=rngs)
    self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_1 = ConvBN(cin, c7, 1, rngs=rngs)
    self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch_pool = ConvBN(cin, 192, 1, rngs=rngs)

  def __call__(self, x):
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = x
    for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                  self.branch7x7dbl_4, self.branch7x7dbl_5):
      bd = layer(bd)
    bp = self.branch_pool(avg_pool_3x3_exclude_pad(x))
    return jnp.concatenate([self.branch1x1(x), b7, bd, bp], axis=-1)


class InceptionD(nnx.Module):  # Mixed_7a: 17x17 -> 8x8

  def __init__(self, cin: int, *, rngs: nnx.Rngs):
    self.branch3x3_1 = ConvBN(cin, 192, 1, rngs=rngs)
    self.branch3x3_2 = ConvBN(192, 320, 3, stride=2, rngs=rngs)
    self.branch7x7x3_1 = ConvBN(cin, 192, 1, rngs=rngs)
    self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2, rngs=rngs)

  def __call__(self, x):
    b3 = self.branch3x3_2(self.branch3x3_1(x))
    b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
    return jnp.concatenate([b3, b7, max_pool(x)], axis=-1)


class InceptionE(nnx.Module):  # Mixed_7b (average pool), Mixed_7c (max pool in FID's graph)

  def __init__(self, cin: int, pool: str, *, rngs: nnx.Rngs):
    self.pool = pool
    self.branch1x1 = ConvBN(cin, 320, 1, rngs=rngs)
    self.branch3x3_1 = ConvBN(cin, 384, 1, rngs=rngs)
    self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
    self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
    self.branch3x3dbl_1 = ConvBN(cin, 448, 1, rngs=rngs)
    self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
    self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
    self.branch_pool = ConvBN(cin, 192, 1, rngs=rngs)

  def __call__(self, x):
    b3 = self.branch3x3_1(x)
    b3 = jnp.concatenate([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], axis=-1)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    bd = jnp.concatenate([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], axis=-1)
    pooled = (max_pool(x, 3, 1, 1) if self.pool == 'max' else avg_pool_3x3_exclude_pad(x))
    return jnp.concatenate([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], axis=-1)


def _resize_matrix(size_in: int, size_out: int) -> np.ndarray:
  """[out, in] bilinear weights, half-pixel centres, no antialiasing (torch semantics).

  Source coordinates are rounded to float32 once, after a fused multiply-add with the
  float32 scale, which reproduces PyTorch's CPU weights bit for bit (at ~300 pixels
  other roundings move weights by up to 3e-5).
  """
  scale = np.float64(np.float32(size_in / size_out))
  src = (scale * (np.arange(size_out, dtype=np.float64) + 0.5) - 0.5).astype(np.float32)
  src = np.maximum(src, np.float32(0.0))
  lo = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
  hi = np.minimum(lo + 1, size_in - 1)
  frac = src - lo.astype(np.float32)
  weights = np.zeros((size_out, size_in), np.float32)
  np.add.at(weights, (np.arange(size_out), lo), np.float32(1.0) - frac)
  np.add.at(weights, (np.arange(size_out), hi), frac)
  return weights


def resize_bilinear(images, size: int = INPUT_SIZE):
  """[N, H, W, C] -> [N, size, size, C] as pytorch-fid's bilinear resize does it."""
  _, h, w, _ = images.shape
  rows = jnp.asarray(_resize_matrix(h, size))
  cols = jnp.asarray(_resize_matrix(w, size))
  hi = jax.lax.Precision.HIGHEST
  out = jnp.einsum('ph,nhwc->npwc', rows, images, precision=hi)
  return jnp.einsum('qw,npwc->npqc', cols, out, precision=hi)


class InceptionV3FID(nnx.Module):
  """The FID InceptionV3; call on [N, H, W, C] images in [0, 1]."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2, rngs=rngs)
    self.Conv2d_2a_3x3 = ConvBN(32, 32, 3, rngs=rngs)
    self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1, rngs=rngs)
    self.Conv2d_3b_1x1 = ConvBN(64, 80, 1, rngs=rngs)
    self.Conv2d_4a_3x3 = ConvBN(80, 192, 3, rngs=rngs)
    self.Mixed_5b = InceptionA(192, 32, rngs=rngs)
    self.Mixed_5c = InceptionA(256, 64, rngs=rngs)
    self.Mixed_5d = InceptionA(288, 64, rngs=rngs)
    self.Mixed_6a = InceptionB(288, rngs=rngs)
    self.Mixed_6b = InceptionC(768, 128, rngs=rngs)
    self.Mixed_6c = InceptionC(768, 160, rngs=rngs)
    self.Mixed_6d = InceptionC(768, 160, rngs=rngs)
    self.Mixed_6e = InceptionC(768, 192, rngs=rngs)
    self.Mixed_7a = InceptionD(768, rngs=rngs)
    self.Mixed_7b = InceptionE(1280, 'avg', rngs=rngs)
    self.Mixed_7c = InceptionE(2048, 'max', rngs=rngs)
    self.fc = nnx.Linear(FEATURE_DIM, NUM_LOGITS, precision=jax.lax.Precision.HIGHEST,
                         rngs=rngs)

  def __call__(self, images, resize: bool = True) -> dict[str, jax.Array]:
    if images.shape[-1] == 1:
      images = jnp.repeat(images, 3, axis=-1)
    x = images.astype(jnp.float32)
    if resize:
      x = resize_bilinear(x)
    x = 2.0 * x - 1.0
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = max_pool(x)
    x = max_pool(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
    for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                  self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e,
                  self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
      x = block(x)
    pool = jnp.mean(x, axis=(1, 2))
    return {'pool': pool, 'logits': self.fc(pool)}


def _abstract_model() -> InceptionV3FID:
  return nnx.eval_shape(lambda: InceptionV3FID(rngs=nnx.Rngs(0)))


@functools.lru_cache(maxsize=1)
def _param_shapes() -> tuple[tuple[str, tuple[int, ...]], ...]:
  return tuple(('.'.join(str(p) for p in path), tuple(v.shape))
               for path, v in nnx.to_flat_state(nnx.state(_abstract_model())))


def param_shapes() -> dict[str, tuple[int, ...]]:
  """Flat 'Mixed_5b.branch1x1.conv.kernel'-style names and shapes of every weight."""
  return dict(_param_shapes())


def from_params(params: Mapping[str, np.ndarray]) -> InceptionV3FID:
  """The network holding `params` (flat names, see `param_shapes`).

  Built abstractly and then filled, which skips the random initialisation of 24M
  weights (tens of seconds on a CPU).
  """
  model = _abstract_model()
  set_params(model, params)
  return model


def set_params(model: InceptionV3FID, params: Mapping[str, np.ndarray]) -> None:
  """Copies flat named arrays (see `param_shapes`) into `model`; all must be present."""
  expected = param_shapes()
  missing = sorted(set(expected) - set(params))
  unexpected = sorted(set(params) - set(expected))
  if missing or unexpected:
    raise InputFileError(f'Inception weights do not fit the network: missing {missing[:5]}, '
                         f'unexpected {unexpected[:5]}.')
  for name, value in params.items():
    if tuple(value.shape) != expected[name]:
      raise InputFileError(f'Inception weight {name} has shape {value.shape}, expected '
                           f'{expected[name]}.')
    *modules, leaf = name.split('.')
    owner = functools.reduce(getattr, modules, model)
    variable = getattr(owner, leaf)
    if hasattr(variable, 'set_value'):  # flax >= 0.12 deprecates assigning `.value`
      variable.set_value(jnp.asarray(value, jnp.float32))
    else:
      variable.value = jnp.asarray(value, jnp.float32)


def weights_path(path: str | None = None) -> str:
  return os.path.expanduser(path or os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS)


def load(path: str | None = None) -> InceptionV3FID:
  """The FID Inception with converted weights (`.npz`; convert_weights/inception.py makes it).

  The path defaults to $BASIS_INCEPTION_WEIGHTS, then ~/.cache/basis_jax/inception_fid.npz.
  """
  path = weights_path(path)
  if not os.path.exists(path):
    raise MissingFileError(
        f'Inception weights not found at {path}. IS/FID need pytorch-fid\'s '
        f'{TORCH_WEIGHTS_NAME} (a release asset of the pytorch-fid project, "fid_weights"); '
        'download it on a machine with internet, then run\n'
        f'  python -m convert_weights.inception --input {TORCH_WEIGHTS_NAME} '
        f'--output {DEFAULT_WEIGHTS}\n'
        f'or point ${WEIGHTS_ENV} (or experiments.evaluate --config.inception_weights) at '
        'the converted .npz.')
  if path.endswith('.pth'):
    # The library reads converted weights only; converting is convert_weights' job (which
    # imports this module, so importing it back here would make a circle).
    raise InputFileError(
        f"{path} is pytorch-fid's PyTorch file; IS/FID read the converted .npz.",
        hint=f'python -m convert_weights.inception --input {path} --output {DEFAULT_WEIGHTS}')
  with np.load(path) as f:
    params = {k: f[k] for k in f.files}
  source = str(params.pop(SOURCE_DIGEST_KEY, ''))
  if not source.startswith(TORCH_WEIGHTS_SHA256_PREFIX):
    from basis_jax import errors  # pylint: disable=g-import-not-at-top
    raise errors.InputFileError(
        f'{path} does not record a source digest starting with {TORCH_WEIGHTS_SHA256_PREFIX} '
        f'(found {source or "none"}): it was not converted from pytorch-fid\'s '
        f'{TORCH_WEIGHTS_NAME}, or by an older converter.',
        hint=f'Convert it again: python -m convert_weights.inception --input '
             f'{TORCH_WEIGHTS_NAME} --output {DEFAULT_WEIGHTS}')
  return from_params(params)


class FeatureExtractor:
  """Jitted batched Inception forward: pool features and logits for many images."""

  def __init__(self, model: InceptionV3FID, batch_size: int = 100):
    self.batch_size = batch_size
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, images):
      return nnx.merge(graphdef, state)(images)

    self._state = state
    self._forward = forward

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    """images [N, H, W, C] in [0, 1] -> {'pool': [N, 2048], 'logits': [N, 1008]}."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
      raise ValueError(f'Inception needs [N, H, W, 1 or 3] images, got {images.shape}.')
    if not np.isfinite(images).all():
      raise ValueError(f'{int((~np.isfinite(images)).sum())} Inception input values are NaN '
                       'or inf.')
    low, high = float(images.min()), float(images.max())
    if low < -1e-6 or high > 1 + 1e-6:  # [0, 255] images would give silently wrong scores.
      raise ValueError(f'Inception needs images in [0, 1], got values in [{low:.4g}, '
                       f'{high:.4g}].')
    result = sharding.map_chunks(lambda batch: self._forward(self._state, batch), [images],
                                 self.batch_size)
    return {key: result[key] for key in ('pool', 'logits')}
