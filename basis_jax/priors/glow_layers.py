"""The invertible layers of openai Glow (Kingma & Dhariwal 2018), in NHWC.

Every flow layer maps `x -> (y, logdet)` and back with `reverse=True`; `logdet` is the
log |det ∂y/∂x| per image. Layers whose log-det does not depend on the input (actnorm,
the 1×1 convolution) return a scalar that broadcasts over the batch.

Data-dependent initialisation (actnorm) is a separate eager pass: every layer takes
`init=True`, which sets its actnorm parameters from the statistics of the batch it sees
and then applies them, exactly like openai's `get_variable_ddi`. Inside `jit` `init` is
always False, so the traced functions are pure.

Initial weights come from a numpy Generator: building a model then compiles nothing
(on the CPU, jitting dozens of small `jax.random` calls costs seconds).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# openai multiplies the stored log-scales of actnorm and of the zero-initialised
# convolutions by 3 (a larger effective learning rate for them); we store them the same
# way so TF checkpoints load unchanged and training dynamics match.
LOGSCALE_FACTOR = 3.0


def squeeze2d(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, H/2, W/2, 4C]; new channel index = c·4 + dy·2 + dx."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // 2, 2, w // 2, 2, c)
  x = x.transpose(0, 1, 3, 5, 2, 4)
  return x.reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze2d(x: jax.Array) -> jax.Array:
  """Inverse of `squeeze2d`."""
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, c // 4, 2, 2)
  x = x.transpose(0, 1, 4, 2, 5, 3)
  return x.reshape(b, 2 * h, 2 * w, c // 4)


def gaussian_log_prob(mean, logsd, x) -> jax.Array:
  """Sum over H, W, C of log N(x; mean, exp(logsd)²), one value per image."""
  logps = -0.5 * (np.log(2 * np.pi) + 2.0 * logsd + (x - mean)**2 * jnp.exp(-2.0 * logsd))
  return jnp.sum(logps, axis=(1, 2, 3))


def _edge_pad(x: jax.Array, ph: int, pw: int) -> jax.Array:
  """Zero padding plus one extra channel that is 1 on the padded border, 0 inside.

  openai's `add_edge_padding`: it lets a 'same' convolution tell a zero pixel from the
  image edge.
  """
  x = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
  border = np.ones(x.shape[1:3], np.float32)
  border[ph:x.shape[1] - ph, pw:x.shape[2] - pw] = 0.0
  border = jnp.broadcast_to(jnp.asarray(border, x.dtype)[None, :, :, None],
                            x.shape[:3] + (1,))
  return jnp.concatenate([x, border], axis=-1)


def _conv(x: jax.Array, kernel: jax.Array, edge_padding: bool) -> jax.Array:
  """'Same' convolution with an HWIO kernel, with or without the edge channel."""
  kh, kw = kernel.shape[:2]
  if edge_padding and (kh > 1 or kw > 1):
    x = _edge_pad(x, (kh - 1) // 2, (kw - 1) // 2)
    padding = "VALID"
  else:
    padding = "SAME"
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _lu(w: np.ndarray):
  """w = P·L·U with partial pivoting (numpy only, so building a model compiles nothing)."""
  n = w.shape[0]
  u = w.astype(np.float64).copy()
  lower = np.eye(n)
  perm = np.arange(n)
  for k in range(n - 1):
    pivot = k + int(np.argmax(np.abs(u[k:, k])))
    if pivot != k:
      u[[k, pivot]] = u[[pivot, k]]
      lower[[k, pivot], :k] = lower[[pivot, k], :k]
      perm[[k, pivot]] = perm[[pivot, k]]
    lower[k + 1:, k] = u[k + 1:, k] / u[k, k]
    u[k + 1:] -= np.outer(lower[k + 1:, k], u[k])
  # Row i of L·U is row perm[i] of w, so P[perm[i], i] = 1 gives P·L·U = w.
  p = np.zeros((n, n))
  p[perm, np.arange(n)] = 1.0
  return p, lower, np.triu(u)


def _kernel_in_channels(in_channels: int, kernel_size: int, edge_padding: bool) -> int:
  return in_channels + (1 if edge_padding and kernel_size > 1 else 0)


class ActNorm(nnx.Module):
  """y = (x + bias)·exp(3·logs), per channel; initialised to unit variance on data."""

  def __init__(self, channels: int):
    self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
    self.logs = nnx.Param(jnp.zeros((channels,), jnp.float32))  # Stored / LOGSCALE_FACTOR.

  def initialize(self, x: jax.Array, scale: float = 1.0):
    mean = jnp.mean(x, axis=(0, 1, 2))
    std = jnp.sqrt(jnp.mean((x - mean)**2, axis=(0, 1, 2)))
    self.bias[...] = -mean
    self.logs[...] = jnp.log(scale / (std + 1e-6)) / LOGSCALE_FACTOR

  def __call__(self, x, reverse: bool = False, init: bool = False):
    if init:
      self.initialize(x)
    logs = self.logs[...] * LOGSCALE_FACTOR
    logdet = jnp.sum(logs) * x.shape[1] * x.shape[2]
    if reverse:
      return x * jnp.exp(-logs) - self.bias[...], -logdet
    return (x + self.bias[...]) * jnp.exp(logs), logdet


class InvConv1x1(nnx.Module):
  """Invertible 1×1 convolution y = W·x per pixel, W initialised to a random rotation.

  With `lu_decomposed`, W = P·L·(U + diag(sign_s·exp(log_s))) with P fixed, which makes
  the log-det O(C) (Glow §3.2); otherwise W is a free matrix.
  """

  def __init__(self, channels: int, lu_decomposed: bool, *, rng: np.random.Generator):
    w = np.linalg.qr(rng.standard_normal((channels, channels)))[0]
    self.lu_decomposed = lu_decomposed
    if not lu_decomposed:
      self.weight = nnx.Param(jnp.asarray(w, jnp.float32))
      return
    p, lower, upper = _lu(w)
    s = np.diag(upper)
    self.p = nnx.Variable(jnp.asarray(p, jnp.float32))  # A fixed permutation, not trained.
    self.sign_s = nnx.Variable(jnp.asarray(np.sign(s), jnp.float32))
    self.lower = nnx.Param(jnp.asarray(lower, jnp.float32))
    self.upper = nnx.Param(jnp.asarray(np.triu(upper, 1), jnp.float32))
    self.log_s = nnx.Param(jnp.asarray(np.log(np.abs(s)), jnp.float32))

  def matrix_and_logabsdet(self):
    if not self.lu_decomposed:
      w = self.weight[...]
      return w, jnp.linalg.slogdet(w)[1]
    c = self.log_s[...].shape[0]
    lower = jnp.tril(self.lower[...], -1) + jnp.eye(c)
    upper = jnp.triu(self.upper[...], 1) + jnp.diag(self.sign_s[...] * jnp.exp(self.log_s[...]))
    return self.p[...] @ lower @ upper, jnp.sum(self.log_s[...])

  def __call__(self, x, reverse: bool = False, init: bool = False):
    del init
    w, logabsdet = self.matrix_and_logabsdet()
    logdet = logabsdet * x.shape[1] * x.shape[2]
    if reverse:
      return jnp.einsum("bhwi,oi->bhwo", x, jnp.linalg.inv(w)), -logdet
    return jnp.einsum("bhwi,oi->bhwo", x, w), logdet


class Conv(nnx.Module):
  """Convolution without bias followed by actnorm (openai `conv2d` with do_actnorm)."""

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
               edge_padding: bool, *, rng: np.random.Generator):
    shape = (kernel_size, kernel_size,
             _kernel_in_channels(in_channels, kernel_size, edge_padding), out_channels)
    self.kernel = nnx.Param(jnp.asarray(0.05 * rng.standard_normal(shape), jnp.float32))
    self.actnorm = ActNorm(out_channels)
    self.edge_padding = edge_padding

  def __call__(self, x, init: bool = False):
    y, _ = self.actnorm(_conv(x, self.kernel[...], self.edge_padding), init=init)
    return y


class ZeroConv(nnx.Module):
  """Zero-initialised 3×3 convolution, output scaled by exp(3·logs) (`conv2d_zeros`).

  Zero initialisation makes every coupling start as the identity-with-fixed-scale and
  every learned prior start as N(0, 1).
  """

  def __init__(self, in_channels: int, out_channels: int, edge_padding: bool):
    shape = (3, 3, _kernel_in_channels(in_channels, 3, edge_padding), out_channels)
    self.kernel = nnx.Param(jnp.zeros(shape, jnp.float32))
    self.bias = nnx.Param(jnp.zeros((out_channels,), jnp.float32))
    self.logs = nnx.Param(jnp.zeros((out_channels,), jnp.float32))  # Stored / 3.
    self.edge_padding = edge_padding

  def __call__(self, x):
    y = _conv(x, self.kernel[...], self.edge_padding) + self.bias[...]
    return y * jnp.exp(self.logs[...] * LOGSCALE_FACTOR)


class CouplingNet(nnx.Module):
  """The coupling network NN(z1): 3×3 conv → ReLU → 1×1 conv → ReLU → zero conv."""

  def __init__(self, in_channels: int, out_channels: int, width: int, edge_padding: bool,
               *, rng: np.random.Generator):
    self.conv1 = Conv(in_channels, width, 3, edge_padding, rng=rng)
    self.conv2 = Conv(width, width, 1, edge_padding, rng=rng)
    self.conv_out = ZeroConv(width, out_channels, edge_padding)

  def __call__(self, x, init: bool = False):
    h = jax.nn.relu(self.conv1(x, init=init))
    h = jax.nn.relu(self.conv2(h, init=init))
    return self.conv_out(h)


class FlowStep(nnx.Module):
  """actnorm → invertible 1×1 conv → affine (or additive) coupling."""

  def __init__(self, channels: int, width: int, coupling: str, lu_decomposed: bool,
               edge_padding: bool, *, rng: np.random.Generator):
    if channels % 2:
      raise ValueError(f"A flow step needs an even number of channels, got {channels}.")
    self.actnorm = ActNorm(channels)
    self.invconv = InvConv1x1(channels, lu_decomposed, rng=rng)
    out_channels = channels if coupling == "affine" else channels // 2
    self.coupling_net = CouplingNet(channels // 2, out_channels, width, edge_padding, rng=rng)
    self.coupling = coupling

  def _coupling(self, z, reverse: bool, init: bool):
    c = z.shape[-1] // 2
    z1, z2 = z[..., :c], z[..., c:]
    h = self.coupling_net(z1, init=init)
    if self.coupling == "additive":
      z2 = z2 - h if reverse else z2 + h
      return jnp.concatenate([z1, z2], axis=-1), jnp.zeros((z.shape[0],), z.dtype)
    shift = h[..., 0::2]
    log_scale = jax.nn.log_sigmoid(h[..., 1::2] + 2.0)  # scale = sigmoid(·+2) ∈ (0, 1).
    logdet = jnp.sum(log_scale, axis=(1, 2, 3))
    if reverse:
      z2 = z2 * jnp.exp(-log_scale) - shift
      logdet = -logdet
    else:
      z2 = (z2 + shift) * jnp.exp(log_scale)
    return jnp.concatenate([z1, z2], axis=-1), logdet

  def __call__(self, x, reverse: bool = False, init: bool = False):
    if reverse:
      z, ld_coupling = self._coupling(x, reverse=True, init=False)
      z, ld_invconv = self.invconv(z, reverse=True)
      z, ld_actnorm = self.actnorm(z, reverse=True)
    else:
      z, ld_actnorm = self.actnorm(x, init=init)
      z, ld_invconv = self.invconv(z)
      z, ld_coupling = self._coupling(z, reverse=False, init=init)
    return z, ld_actnorm + ld_invconv + ld_coupling
