"""Mixtures to separate: test-set pairs, class-split pairs, grayscale inputs, user images.

`from_config(config, image_shape)` builds a `MixtureSet` from `config.data` (which images,
see `basis_jax.files.data`) and `config.mixture` (how to mix them, see
`mixture_config_defaults`). Mixtures are reproducible from `config.mixture.seed`; mixture i
depends only on (seed, i), so the first n do not change when `num_mixtures` grows.

Kinds:
- 'agnostic': k test images drawn uniformly at random (they may share a class).
- 'class_split': component j from class group j (MNIST 0-4 vs 5-9, CIFAR-10 animals vs
  vehicles by default; other groups through `config.mixture.class_groups`).
- 'grayscale': one colour image per mixture, the mixture is its channel mean (colorization).
- 'images': user mixture images (PNG/JPEG) with no ground truth.
This module only picks the ground truth: the mixtures m = g(x) of a picked set are made by
the run's mixing operator, the one definition of g (`basis_jax.sampling.mixing.mix`). Its gains are
`config.mixing.alphas`, the only place they are read from.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any, Sequence

import ml_collections
import numpy as np

from basis_jax.files import data as data_lib, data_formats

from basis_jax import errors
from basis_jax.errors import ConfigError, InputFileError

KINDS = ('agnostic', 'class_split', 'grayscale', 'images')
# Default class groups for class-split mixtures, one group per component.
CLASS_GROUPS = {
    'mnist': ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9)),
    # animals (bird, cat, deer, dog, frog, horse) vs vehicles (airplane, car, ship, truck)
    'cifar10': ((2, 3, 4, 5, 6, 7), (0, 1, 8, 9)),
}


@dataclasses.dataclass(frozen=True)
class MixtureSet:
  """Mixtures [N, H, W, C] and, when known, what went into them.

  mixtures: user images, or None for a picked ground truth until g is applied to it.
  ground_truth: [N, k, H, W, C] float32, or None for user images.
  indices: [N, k] int64 positions in the test set that were mixed, or None.
  alphas: the k mixing weights (m = sum_j alphas[j] * x_j); for 'grayscale' a single 1.
  """
  mixtures: np.ndarray | None
  ground_truth: np.ndarray | None
  indices: np.ndarray | None
  alphas: tuple[float, ...]
  kind: str = 'agnostic'
  names: tuple[str, ...] | None = None  # file names for kind 'images'

  def __len__(self) -> int:
    return len(self.mixtures if self.ground_truth is None else self.ground_truth)

  @property
  def num_components(self) -> int:
    return len(self.alphas)


def mixture_config_defaults() -> ml_collections.ConfigDict:
  """The `config.mixture` fields and their defaults, for config files to start from."""
  return ml_collections.ConfigDict({
      'kind': 'agnostic',  # 'agnostic' | 'class_split' | 'grayscale' | 'images'
      'num_components': 2,
      'seed': 0,
      # 'agnostic' only: redraw until the k classes differ (a variant in the reference
      # code); the paper's class-agnostic mixtures may share a class.
      'distinct_classes': False,
      # None takes config.num_mixtures when present, else the whole test set.
      'num_mixtures': ml_collections.FieldReference(None, field_type=int),
      # For 'class_split' on data without defaults: one tuple of labels per component.
      'class_groups': ml_collections.FieldReference(None, field_type=tuple),
      # For 'images': a folder, a glob pattern or a comma-separated list of files.
      'files': ml_collections.FieldReference(None, field_type=str),
      # For 'images': the mixture value of pixel 255 (an 8-bit file holds m / image_scale).
      # None: 1, allowed only when the mixtures fit in [0, 1] (Σα <= 1); a sum with
      # α = (1, 1) spans [0, 2] and must say how its files were scaled.
      'image_scale': ml_collections.FieldReference(None, field_type=float),
  })


def _get(config: Any, name: str, default: Any = None) -> Any:
  try:
    value = config[name]
  except (KeyError, AttributeError, TypeError):
    return default
  return default if value is None else value


def from_config(config: Any, image_shape: Sequence[int]) -> MixtureSet:
  """Builds the mixtures that `config.data` + `config.mixture` describe.

  `image_shape` is a component's (H, W, C) in the dataset's space (`Prior.data_shape`):
  test images and user images must match it (for 'grayscale' the mixture has one channel
  and the components have C).
  """
  if _get(_get(config, 'mixture', {}), 'alphas') is not None:
    raise ConfigError('config.mixture.alphas is not read: the gains of g are '
                      'config.mixing.alphas only.', hint='set --config.mixing.alphas instead.')
  mix = mixture_config_defaults()
  mix.update(dict(_get(config, 'mixture', {})))
  if mix.kind not in KINDS:
    raise ConfigError(f'config.mixture.kind={mix.kind!r}; expected one of {KINDS}.')
  image_shape = tuple(int(d) for d in image_shape)
  num_mixtures = mix.num_mixtures or _get(config, 'num_mixtures')
  colorize = mix.kind == 'grayscale' or _get(_get(config, 'mixing', {}), 'kind') == 'grayscale'
  k = 1 if colorize else int(mix.num_components)
  alphas = _resolve_alphas(None if colorize else _get(_get(config, 'mixing', {}), 'alphas'), k)
  if mix.kind == 'images':
    return load_mixture_images(mix.files, image_shape, alphas, grayscale_input=colorize,
                               image_scale=mix.image_scale)

  dataset = data_lib.load(_get(config, 'data', {}))
  if dataset.images.shape[1:] != image_shape:
    raise ConfigError(f'Dataset {dataset.name} has images of shape '
                      f'{dataset.images.shape[1:]}, but the prior expects {image_shape}; '
                      'check config.data or the prior (a prior of another size declares '
                      'the dataset shape it pads from, e.g. config.prior.data_shape).')
  n = int(num_mixtures or len(dataset))
  if mix.kind == 'grayscale':
    indices = _draw_without_replacement(int(mix.seed), len(dataset), n)[:, None]
    return MixtureSet(None, dataset.images[indices], indices, alphas, 'grayscale')
  if mix.kind == 'agnostic':
    labels = None
    if mix.distinct_classes:
      if dataset.labels is None:
        raise ConfigError(f'distinct_classes needs labels; {dataset.name} has none.')
      labels = dataset.labels
    indices = _draw(int(mix.seed), [np.arange(len(dataset))] * k, n, labels)
  else:
    groups = mix.class_groups or CLASS_GROUPS.get(_get(_get(config, 'data', {}), 'source'))
    indices = _draw(int(mix.seed), _class_pools(dataset, groups, k), n)
  return MixtureSet(None, dataset.images[indices], indices, alphas, mix.kind)  # [N, k, H, W, C]


def from_priors(samplers: Sequence[Any], num_mixtures: int, seed: int,
                alphas: Sequence[float]) -> MixtureSet:
  """Ground truth drawn from the priors themselves (config.data.source 'prior').

  `samplers[j]` is component j's `Prior.sample` (num, seed) -> images; component j of
  mixture i is the draw (seed, i, j), so mixture i does not depend on num_mixtures.
  """
  if any(draw is None for draw in samplers):
    raise ConfigError("config.data.source='prior' draws the ground truth from the priors, "
                      "but a prior of this run cannot draw samples; use a dataset source.")
  truth = np.stack([np.stack([draw(1, [seed, i, j])[0] for j, draw in enumerate(samplers)])
                    for i in range(int(num_mixtures))])
  return MixtureSet(None, truth, None, tuple(float(a) for a in alphas), 'prior')


def _resolve_alphas(alphas: Any, k: int) -> tuple[float, ...]:
  if alphas is None:
    return (1.0,) * k
  alphas = tuple(float(a) for a in np.atleast_1d(alphas))
  if len(alphas) == 1:
    alphas *= k
  if len(alphas) != k:
    raise ConfigError(f'{len(alphas)} mixing weights given for {k} components.')
  return alphas


def _draw(seed: int, pools: Sequence[np.ndarray], n: int,
          labels: np.ndarray | None = None) -> np.ndarray:
  """[n, k] test-set indices; component j uniform over pools[j].

  Each mixture has its own random stream (seed, mixture index), so mixture i is the same
  whatever n is. The k images of a mixture are distinct (an image mixed with itself would
  make the Average baseline exact); with `labels`, their classes are distinct too.
  """
  k = len(pools)
  indices = np.empty((n, k), np.int64)
  for i in range(n):
    rng = np.random.default_rng((seed, i))
    for _ in range(1000):
      row = np.array([pool[rng.integers(len(pool))] for pool in pools])
      keys = row if labels is None else labels[row]
      if len(np.unique(keys)) == k:
        break
    else:
      raise ConfigError(f'Could not draw {k} distinct components for mixture {i}; the '
                        'pools are too small.')
    indices[i] = row
  return indices


def _draw_without_replacement(seed: int, size: int, n: int) -> np.ndarray:
  # Colorization uses each test image once (the paper colours the whole test set).
  if n > size:
    raise ConfigError(f'Asked for {n} grayscale mixtures from {size} images.')
  return np.random.default_rng(seed).permutation(size)[:n]


def _class_pools(dataset: data_formats.Dataset, groups: Any, k: int) -> list[np.ndarray]:
  if dataset.labels is None:
    raise ConfigError(f'Class-split mixtures need labels; {dataset.name} has none.')
  if groups is None:
    raise ConfigError(f'No default class groups for {dataset.name}; set '
                      'config.mixture.class_groups to one tuple of labels per component.')
  groups = [tuple(int(c) for c in g) for g in groups]
  if len(groups) != k:
    raise ConfigError(f'{len(groups)} class groups for {k} components; set '
                      'config.mixture.class_groups to one group per component.')
  pools = [np.flatnonzero(np.isin(dataset.labels, g)) for g in groups]
  for g, pool in zip(groups, pools):
    if len(pool) == 0:
      raise ConfigError(f'No images of classes {g} in {dataset.name}.')
  return pools


def load_mixture_images(files: Any, image_shape: Sequence[int],
                        alphas: Sequence[float] = (1.0, 1.0), *,
                        grayscale_input: bool = False,
                        image_scale: float | None = None) -> MixtureSet:
  """User mixtures (PNG/JPEG...), read as [N, H, W, C] in [0, image_scale]; no ground truth.

  With `grayscale_input` (colorization) the files are read as one channel. An 8-bit file
  holds [0, 1]; mixtures m = Σ α_j x_j span [0, Σα], so for Σα > 1 `image_scale` (the
  mixture value of pixel 255) must be given.
  """
  if not files:
    raise ConfigError("config.mixture.kind='images' needs config.mixture.files (a folder, a "
                      'glob pattern or a comma-separated list of image files).')
  if isinstance(files, str):
    if os.path.isdir(files):
      paths = data_formats.list_image_files(files)
    elif any(ch in files for ch in '*?['):
      paths = sorted(glob.glob(files))
    else:
      paths = [p.strip() for p in files.split(',') if p.strip()]
  else:
    paths = list(files)
  if not paths:
    raise InputFileError(f'No mixture images match {files!r}.')
  h, w, c = image_shape
  images = []
  for path in paths:
    if not os.path.exists(path):
      raise InputFileError(f'Mixture image {path} does not exist.')
    image = data_formats.read_image(path, channels=1 if c == 1 or grayscale_input else 3)
    if image.shape[:2] != (h, w):
      raise InputFileError(f'Mixture image {path} is {image.shape[1]}x{image.shape[0]} '
                           f'(width x height), but the prior separates {w}x{h} images; resize '
                           'or crop it first.')
    images.append(image)
  total = 1.0 if grayscale_input else float(sum(alphas))
  if image_scale is None:
    if total > 1.0 + 1e-6:
      raise errors.ConfigError(
          f'Mixtures with alphas {tuple(alphas)} span [0, {total:g}], but an 8-bit mixture '
          'image holds [0, 1]; reading it as [0, 1] would make every mixture too dark.',
          hint=f'Set config.mixture.image_scale: {total:g} if the files store m / {total:g}, '
               '1.0 if they store m clipped to [0, 1].')
    image_scale = 1.0
  if not image_scale > 0:
    raise errors.ConfigError(f'config.mixture.image_scale must be > 0, got {image_scale}.')
  mixtures = (np.stack(images).astype(np.float32) * (image_scale / 255.0)).astype(np.float32)
  return MixtureSet(mixtures, None, None, tuple(alphas), 'images',
                    tuple(os.path.basename(p) for p in paths))
