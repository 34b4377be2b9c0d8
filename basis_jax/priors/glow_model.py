"""The Glow network (openai/glow architecture): an exact likelihood (the prior: glow.py).

Multi-scale: `levels` times [squeeze → `depth` flow steps → split (all but the last
level)], the split-off half scored by a learned conditional Gaussian ("split prior"), the
final latent by a (optionally learned) top prior. Data live in [−½, ½]
(8-bit images: x/256 − ½ + U(0, 1/256)), NHWC.

Functional use (jit, scan, grad): `graphdef, state = nnx.split(model)` once, then the pure
functions from `make_log_prob_fn(graphdef)` take `state`. For BASIS, one state per σ is
stacked along a leading level axis (see `glow.load`, `stack_states`); `select_level` slices it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from basis_jax.files import checkpoint_io
from basis_jax.priors import glow_layers as layers

_COUPLINGS = ("affine", "additive")


@dataclasses.dataclass(frozen=True)
class GlowConfig:
  """Architecture. The defaults are BASIS's MNIST/CIFAR-10 Glow (~44.6M parameters)."""

  image_shape: tuple[int, int, int] = (32, 32, 3)  # (H, W, C).
  levels: int = 3
  depth: int = 32  # K flow steps per level.
  width: int = 512  # Hidden channels of the coupling network.
  coupling: str = "affine"
  lu_decomposed: bool = False
  learn_top: bool = True
  edge_padding: bool = True  # openai's extra border channel; False for zero padding.
  n_bits: int = 8

  def __post_init__(self):
    shape = tuple(int(s) for s in self.image_shape)
    object.__setattr__(self, "image_shape", shape)
    if len(shape) != 3 or min(shape) < 1:
      raise ValueError(f"image_shape must be (H, W, C), got {self.image_shape}.")
    if self.levels < 1 or self.depth < 1 or self.width < 1:
      raise ValueError(f"levels, depth and width must be >= 1, got {self.levels}, "
                       f"{self.depth}, {self.width}.")
    f = 2**self.levels
    if shape[0] % f or shape[1] % f:
      raise ValueError(f"H and W ({shape[0]}, {shape[1]}) must be divisible by "
                       f"2**levels = {f}.")
    if self.coupling not in _COUPLINGS:
      raise ValueError(f"coupling must be one of {_COUPLINGS}, got {self.coupling!r}.")
    if not 1 <= self.n_bits <= 8:
      raise ValueError(f"n_bits must be in 1..8, got {self.n_bits}.")

  @classmethod
  def from_config(cls, config) -> "GlowConfig":
    """Picks the architecture fields out of a ConfigDict (e.g. `config.prior`)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: config[k] for k in fields if k in config}
    if "image_shape" in values:
      values["image_shape"] = tuple(values["image_shape"])
    return cls(**values)

  @property
  def num_dims(self) -> int:
    return int(np.prod(self.image_shape))

  def level_shapes(self) -> list[tuple[int, int, int]]:
    """(H, W, C) inside each level, after its squeeze."""
    h, w, c = self.image_shape
    shapes = []
    for i in range(self.levels):
      h, w, c = h // 2, w // 2, c * 4
      shapes.append((h, w, c))
      if i < self.levels - 1:
        c //= 2
    return shapes


class Level(nnx.Module):
  """`depth` flow steps, then (except at the top) a split with its learned prior."""

  def __init__(self, channels: int, config: GlowConfig, is_top: bool, *,
               rng: np.random.Generator):
    self.steps = nnx.List([
        layers.FlowStep(channels, config.width, config.coupling, config.lu_decomposed,
                        config.edge_padding, rng=rng) for _ in range(config.depth)])
    # The prior of z2 given z1: [mean | logsd] interleaved in the output channels.
    self.split_prior = (None if is_top else
                        layers.ZeroConv(channels // 2, channels, config.edge_padding))


class Glow(nnx.Module):
  """The full multi-scale flow with its latent priors."""

  def __init__(self, config: GlowConfig, *, seed: int = 0):
    self.config = config
    shapes = config.level_shapes()
    rng = np.random.default_rng(seed)
    self.levels = nnx.List([
        Level(c, config, is_top=(i == config.levels - 1), rng=rng)
        for i, (_, _, c) in enumerate(shapes)])
    top_c = shapes[-1][2]
    self.top_prior = (layers.ZeroConv(2 * top_c, 2 * top_c, config.edge_padding)
                      if config.learn_top else None)

  # -- priors of the latents ------------------------------------------------------------

  def _top_mean_logsd(self, batch: int):
    h, w, c = self.config.level_shapes()[-1]
    p = jnp.zeros((1, h, w, 2 * c), jnp.float32)
    if self.top_prior is not None:
      # The conv sees zeros, but the edge channel makes the learned prior vary at borders.
      p = self.top_prior(p)
    p = jnp.broadcast_to(p, (batch, h, w, 2 * c))
    return p[..., :c], p[..., c:]

  @staticmethod
  def _split_mean_logsd(level: Level, z1):
    h = level.split_prior(z1)
    return h[..., 0::2], h[..., 1::2]

  # -- x -> z ---------------------------------------------------------------------------

  def encode(self, x, init: bool = False):
    """x [B, H, W, C] -> (zs, logdet [B], log p(zs) [B]).

    zs lists the split-off halves level by level, then the top latent; x ↦ zs is a
    bijection and `logdet` its log |det Jacobian|. `init=True` is the eager data-dependent
    actnorm initialisation pass.
    """
    self._check_input(x)
    z = x
    logdet = jnp.zeros((x.shape[0],), jnp.float32)
    logp = jnp.zeros((x.shape[0],), jnp.float32)
    zs = []
    for level in self.levels:
      z = layers.squeeze2d(z)
      for step in level.steps:
        z, ld = step(z, init=init)
        logdet = logdet + ld
      if level.split_prior is not None:
        c = z.shape[-1] // 2
        z, z2 = z[..., :c], z[..., c:]
        mean, logsd = self._split_mean_logsd(level, z)
        logp = logp + layers.gaussian_log_prob(mean, logsd, z2)
        zs.append(z2)
    mean, logsd = self._top_mean_logsd(x.shape[0])
    logp = logp + layers.gaussian_log_prob(mean, logsd, z)
    zs.append(z)
    return zs, logdet, logp

  def __call__(self, x):
    """Exact log-density of x ∈ [−½, ½]^D (continuous, before the 8-bit term), [B]."""
    _, logdet, logp = self.encode(x)
    return logdet + logp

  def log_prob(self, x):
    return self(x)

  def bits_per_dim(self, x):
    """Discrete bits/dim of dequantised data: −(log p(x) − D·log 2^n_bits) / (D·ln 2)."""
    return log_prob_to_bits_per_dim(self(x), self.config)

  def initialize(self, x):
    """Data-dependent actnorm initialisation from one batch (eager, mutates the model)."""
    self.encode(x, init=True)

  # -- z -> x ---------------------------------------------------------------------------

  def _decode(self, top_z, next_z2: Callable[[int, jax.Array, jax.Array], jax.Array]):
    z = top_z
    for index in reversed(range(len(self.levels))):
      level = self.levels[index]
      if level.split_prior is not None:
        mean, logsd = self._split_mean_logsd(level, z)
        z = jnp.concatenate([z, next_z2(index, mean, logsd)], axis=-1)
      for step in reversed(level.steps):
        z, _ = step(z, reverse=True)
      z = layers.unsqueeze2d(z)
    return z

  def decode(self, zs: Sequence[jax.Array]):
    """Exact inverse of `encode`: zs (as `encode` returns them) -> x."""
    zs = list(zs)
    if len(zs) != len(self.levels):
      raise ValueError(f"Expected {len(self.levels)} latents, got {len(zs)}.")
    return self._decode(zs[-1], lambda index, mean, logsd: zs[index])

  def sample(self, key: jax.Array, batch: int, temperature: float = 1.0):
    """Ancestral samples x ~ p (latents scaled by `temperature`), [B, H, W, C]."""
    keys = list(jax.random.split(key, len(self.levels)))
    mean, logsd = self._top_mean_logsd(batch)
    top_z = mean + temperature * jnp.exp(logsd) * jax.random.normal(keys[-1], mean.shape)

    def next_z2(index, mean, logsd):
      return mean + temperature * jnp.exp(logsd) * jax.random.normal(keys[index], mean.shape)

    return self._decode(top_z, next_z2)

  def _check_input(self, x):
    if x.ndim != 4 or tuple(x.shape[1:]) != self.config.image_shape:
      raise ValueError(f"Glow expects images [B, {', '.join(map(str, self.config.image_shape))}]"
                       f" (NHWC), got shape {tuple(x.shape)}.")


def log_prob_to_bits_per_dim(log_prob, config: GlowConfig):
  """Adds the n-bit dequantisation term −D·log 2^n and converts nats to bits/dim."""
  d = config.num_dims
  return -(log_prob - d * config.n_bits * np.log(2.0)) / (d * np.log(2.0))


@functools.partial(jax.jit, static_argnames="n_bits")
def dequantize(images, key: jax.Array, n_bits: int = 8):
  """Images in [0, 1] (multiples of 1/255) -> Glow's data space x/2^n − ½ + U(0, 1/2^n)."""
  bins = 2.0**n_bits
  x = jnp.floor(jnp.round(jnp.asarray(images, jnp.float32) * 255.0) / 2**(8 - n_bits))
  return x / bins - 0.5 + jax.random.uniform(key, x.shape, jnp.float32, 0.0, 1.0 / bins)


def create(config: GlowConfig, seed: int = 0, init_batch=None) -> Glow:
  """A fresh Glow; with `init_batch` ([B, H, W, C] in [−½, ½]) its actnorms are
  initialised from data, otherwise they start as the identity."""
  model = Glow(config, seed=seed)
  if init_batch is not None:
    # Under jit: eagerly, every small op would compile on its own.
    _initialize_jit(model, jnp.asarray(init_batch, jnp.float32))
  return model


@nnx.jit
def _initialize_jit(model: Glow, init_batch):
  model.initialize(init_batch)


def widen(narrow_state, narrow: GlowConfig, wide_state, wide: GlowConfig):
  """`wide_state` (a Glow of `wide`, e.g. freshly created and data-initialised) with the
  narrower trained Glow `narrow_state` copied in so that the wide model computes exactly
  the narrow one's log-density: its coupling networks' first `narrow.width` hidden channels
  are the narrow model's, the new channels keep their fresh weights on the way in and get
  zero weights on the way out (into the old 1×1 outputs and into the zero convolution), so
  they start with no effect and receive gradients (function-preserving growth, as Net2Net
  widens a network). Every other parameter is the narrow model's. Only the width may differ.
  """
  if dataclasses.replace(narrow, width=wide.width) != wide or narrow.width > wide.width:
    raise ValueError(f"Can only widen a Glow to a larger width with every other field "
                     f"equal: {narrow} -> {wide}.")
  w, big = narrow.width, wide.width
  small, _ = checkpoint_io.flatten(narrow_state)
  flat, treedef = checkpoint_io.flatten(wide_state)
  leaves = []
  for name, leaf in flat.items():
    old, new = np.asarray(small[name]), np.array(leaf)
    if old.shape == new.shape:
      leaves.append(old)
      continue
    if name.endswith(("conv1/kernel", "conv1/actnorm/bias", "conv1/actnorm/logs",
                      "conv2/actnorm/bias", "conv2/actnorm/logs")):
      new[..., :w] = old  # The old hidden channels; the new ones keep their fresh values.
    elif name.endswith("conv2/kernel"):  # [1, 1, in, out]
      new[:, :, :w, :w] = old
      new[:, :, w:, :w] = 0.0  # New inputs do not reach the old outputs.
    elif name.endswith("conv_out/kernel"):  # [3, 3, width (+ edge channel), out]
      new[:] = 0.0  # New hidden channels do not reach the coupling's shift and scale.
      new[:, :, :w] = old[:, :, :w]
      new[:, :, big:] = old[:, :, w:]  # The edge channel comes after the hidden ones.
    else:
      raise ValueError(f"Cannot widen {name}: {old.shape} -> {new.shape}.")
    leaves.append(new)
  return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a) for a in leaves])


# -- the functional interface -------------------------------------------------------------


def make_log_prob_fn(graphdef) -> Callable[[nnx.State, jax.Array], jax.Array]:
  """Pure (state, x) -> log p(x) [B]."""

  def log_prob_fn(state, x):
    return nnx.merge(graphdef, state)(x)

  return log_prob_fn


def make_score_fn(graphdef) -> Callable[[nnx.State, jax.Array], jax.Array]:
  """Pure (state, x) -> ∇_x log p(x), per image (the images are independent)."""
  log_prob_fn = make_log_prob_fn(graphdef)
  return jax.grad(lambda state, x: jnp.sum(log_prob_fn(state, x)), argnums=1)


# Per-σ fine-tuning of only the "modulation" parameters (`train.finetune_params`, docs/glow.md):
# every actnorm (the flow's, and those inside the coupling networks, which act as a
# per-channel affine modulation of their features), the bias and log-scale of every zero
# convolution, and the learned split and top priors. The rest (3×3 and 1×1 kernels, the
# invertible 1×1 convolutions) stays the clean model's and is shared by every σ.
_MODULATION_LEAVES = ("bias", "logs")
_MODULATION_MODULES = ("split_prior", "top_prior")


def is_modulation_parameter(path: str) -> bool:
  """Whether the parameter at `path` ('levels/0/steps/3/actnorm/bias', as
  `checkpoint_io.flatten` names it) is one that modulation fine-tuning changes per σ."""
  parts = path.split("/")
  return parts[-1] in _MODULATION_LEAVES or any(m in parts for m in _MODULATION_MODULES)


def modulation_mask(state):
  """A pytree like `state` with True at the modulation parameters, False elsewhere."""
  flat, treedef = checkpoint_io.flatten(state)
  return jax.tree_util.tree_unflatten(treedef, [is_modulation_parameter(k) for k in flat])


def stack_states(states: Sequence[nnx.State], shared=None) -> nnx.State:
  """Per-σ states -> one state with a leading level axis (on the host: stacking eagerly
  with jnp would compile one program per parameter shape).

  `shared` (a pytree of bools like the states, e.g. `modulation_mask` negated): leaves
  marked True are equal in every state and stored once, with a leading axis of 1, which
  `select_level` gives to every level; any difference between the states is refused.
  """
  if shared is None:
    return jax.tree.map(lambda *leaves: np.stack([np.asarray(a) for a in leaves]), *states)

  def stack(is_shared, *leaves):
    leaves = [np.asarray(a) for a in leaves]
    if not is_shared:
      return np.stack(leaves)
    if any(not np.array_equal(leaves[0], a) for a in leaves[1:]):
      raise ValueError("A parameter marked shared differs between the per-σ states.")
    return leaves[0][None]

  return jax.tree.map(stack, shared, *states)


def select_level(stacked_state, level):
  """The state of one level (level may be traced): a dynamic index on the leading axis; a
  leaf stored once (leading axis 1, `stack_states(..., shared=...)`) serves every level."""
  return jax.tree.map(
      lambda leaf: jax.lax.dynamic_index_in_dim(
          leaf, level if leaf.shape[0] > 1 else 0, axis=0, keepdims=False),
      stacked_state)
