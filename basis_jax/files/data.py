"""Test images for separation and evaluation: MNIST, CIFAR-10, LSUN, image folders.

`load(config.data)` returns a `Dataset`: float32 NHWC images in [0, 1] plus integer labels
(or None). Two ways in:

- local files in their standard distributions (`basis_jax.files.data_formats`): MNIST's
  four idx `.gz` files, CIFAR-10's python batches or an `.npz`, a folder of image files;
  standard files are checked against their published checksums.
- `tensorflow_datasets` through `tfds.data_source`, which reads prepared ArrayRecord
  files without TensorFlow. *Preparing* a dataset (downloading and converting it) needs
  TensorFlow: `pip install 'basis-jax[prepare]'`, or prepare it once elsewhere and copy
  `~/tensorflow_datasets` over.

Images stay in the dataset's own shape; a prior trained on another (Glow on MNIST padded to
32x32x3) maps them itself (`basis_jax.priors.base.DataSpace`).
"""

from __future__ import annotations

import dataclasses
import logging as logging_lib
import os
from typing import Any, Sequence

import ml_collections
import numpy as np

from basis_jax import errors
from basis_jax.errors import ConfigError, InputFileError
from basis_jax.files.data_formats import (Dataset, centre_crop_resize, load_cifar10_files,
                                          load_image_folder, load_mnist_files, to_float,
                                          verify_checksum)

CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse',
                   'ship', 'truck')
# Names in the tfds catalogue for the sources the paper uses.
TFDS_NAMES = {
    'mnist': 'mnist',
    'cifar10': 'cifar10',
    'lsun_church': 'lsun/church_outdoor',
    'lsun_bedroom': 'lsun/bedroom',
}

def data_config_defaults() -> ml_collections.ConfigDict:
  """The `config.data` fields and their defaults (config files may start from this)."""
  return ml_collections.ConfigDict({
      # 'mnist' | 'cifar10' | 'lsun_church' | 'lsun_bedroom' | 'image_folder' | 'tfds'
      # (a separation run also takes 'prior': ground truth drawn from its priors)
      'source': 'mnist',
      # Local files (folder, archive or .npz); None reads the source through tfds.
      'path': ml_collections.FieldReference(None, field_type=str),
      'split': 'test',
      # Square side for LSUN and image folders (centre crop, then resize); None keeps the
      # size of the files (image folders must then hold images of one size).
      'resolution': ml_collections.FieldReference(None, field_type=int),
      'tfds_name': ml_collections.FieldReference(None, field_type=str),  # source 'tfds'
      'tfds_data_dir': ml_collections.FieldReference(None, field_type=str),
      'download': False,  # let tfds download and prepare (needs TensorFlow)
      'verify_checksums': True,
      'num_examples': ml_collections.FieldReference(None, field_type=int),  # first N only
      # Skip the split's first K examples (e.g. split 'train', first_example 58000: the
      # last 2,000 training images, which the shipped prior holds out for choosing settings).
      'first_example': 0,
      # SHA-256 of a local file at `path` without a published checksum (e.g. an .npz);
      # None: not checked.
      'sha256': ml_collections.FieldReference(None, field_type=str),
  })


def load(data_config: Any) -> Dataset:
  """Loads the dataset that `config.data` describes (see `data_config_defaults`)."""
  cfg = data_config_defaults()
  cfg.update(dict(data_config))
  source, path, split = cfg.source, cfg.path or None, cfg.split  # '' means no path
  if path is not None and not os.path.exists(path):
    raise InputFileError(f'config.data.path {path} does not exist.',
                         hint='point --config.data.path at the dataset files, or leave it '
                              'empty to read the dataset through tfds.')
  if cfg.sha256:
    if path is None or not os.path.isfile(path):
      raise errors.ConfigError(f'config.data.sha256 is set, but config.data.path={path!r} '
                               'is not a file.')
    verify_checksum(path, cfg.sha256.lower())
  if source == 'image_folder':
    if path is None:
      raise ConfigError("config.data.source='image_folder' needs config.data.path.")
    ds = load_image_folder(path, resolution=cfg.resolution)
  elif path is not None:
    if source == 'mnist':
      ds = load_mnist_files(path, split, verify_checksums=cfg.verify_checksums)
    elif source == 'cifar10':
      ds = load_cifar10_files(path, split, verify_checksums=cfg.verify_checksums)
    else:
      raise ConfigError(f'config.data.path is set, but source {source!r} has no local-file '
                        "loader; use 'mnist', 'cifar10' or 'image_folder', or path=None "
                        'to read it through tfds.')
  else:
    if source == 'tfds':
      if not cfg.tfds_name:
        raise ConfigError("config.data.source='tfds' needs config.data.tfds_name.")
      name = cfg.tfds_name
    elif source in TFDS_NAMES:
      name = TFDS_NAMES[source]
    else:
      raise ConfigError(f'Unknown config.data.source {source!r}; expected one of '
                        f"{sorted(TFDS_NAMES) + ['image_folder', 'tfds']}.")
    if source.startswith('lsun') and split == 'test':
      split = 'validation'  # LSUN publishes no test split; its validation set stands in.
    resolution = cfg.resolution or (64 if source.startswith('lsun') else None)
    ds = load_tfds(name, split, data_dir=cfg.tfds_data_dir, download=cfg.download,
                   resolution=resolution,
                   num_examples=None if cfg.num_examples is None
                   else cfg.first_example + cfg.num_examples)
  first = int(cfg.get('first_example', 0))
  if first < 0 or first >= len(ds.images):
    raise ValueError(f'config.data.first_example={first} is outside the {len(ds.images)} '
                     f'examples of {source} ({split}).')
  if cfg.num_examples is not None or first:
    stop = None if cfg.num_examples is None else first + cfg.num_examples
    ds = dataclasses.replace(
        ds, images=ds.images[first:stop],
        labels=None if ds.labels is None else ds.labels[first:stop])
  return ds


# ----------------------------------------------------------------------------- tfds


def load_tfds(name: str, split: str, *, data_dir: str | None = None,
              download: bool = False, resolution: int | None = None,
              num_examples: int | None = None) -> Dataset:
  """A prepared tfds dataset through `tfds.data_source` (no TensorFlow needed to read)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  local = ('--config.data.path=DIR (local files: ' + LOCAL_FILES[name] + ')'
           if name in LOCAL_FILES else 'local files via --config.data.path')
  held = _HeldRecords()
  try:
    with held:  # tfds warns about the empty folder before it fails: the error says it all.
      source = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
  except ModuleNotFoundError as e:
    raise InputFileError(
        f'preparing tfds dataset {name!r} needs TensorFlow ({e}).',
        hint=f"use {local}, or pip install 'basis-jax[prepare]' and run `tfds build {name} "
             "--file_format=array_record`.") from e
  except Exception as e:  # tfds raises several types for "not prepared here"
    # tfds's own words (several lines) go to the log file only.
    logging_lib.getLogger(__name__).info('tfds.data_source(%r) failed: %s', name, e)
    raise InputFileError(
        f'tfds dataset {name!r} (split {split!r}) is not prepared in '
        f'{data_dir or "~/tensorflow_datasets"}, and config.data.download is False.',
        hint=f"use {local}; or prepare it with pip install 'basis-jax[prepare]' and `tfds "
             f"build {name} --file_format=array_record` (--config.data.download=True lets tfds "
             "download and prepare it).") from e
  held.pass_on()
  count = len(source) if num_examples is None else min(num_examples, len(source))
  images, labels = [], []
  for example in _read_examples(source, count):
    image = np.asarray(example['image'])
    if resolution is not None:
      image = centre_crop_resize(image, resolution)
    images.append(image)
    if 'label' in example:
      labels.append(int(example['label']))
  shapes = {im.shape for im in images}
  if len(shapes) > 1:
    raise InputFileError(f'tfds dataset {name!r} has images of several sizes {sorted(shapes)}; '
                         'set config.data.resolution.')
  return Dataset(f'{name.replace("/", "_")}_{split}', to_float(np.stack(images)),
                 np.asarray(labels, np.int64) if len(labels) == count else None)


# What --config.data.path takes instead of a tfds dataset, for the hint of a missing one.
LOCAL_FILES = {
    'mnist': 'the folder of the four MNIST .gz files',
    'cifar10': 'the cifar-10-batches-py folder, cifar-10-python.tar.gz or an .npz',
}


class _HeldRecords(logging_lib.Handler):
  """Holds the log records of the `absl` logger (tfds logs through it) while in use;
  `pass_on()` passes them on. Records held when the block fails are dropped."""

  def __init__(self):
    super().__init__()
    self.records = []
    self.logger = logging_lib.getLogger('absl')

  def __enter__(self):
    self.propagate, self.logger.propagate = self.logger.propagate, False
    self.logger.addHandler(self)
    return self

  def __exit__(self, *exc):
    self.logger.removeHandler(self)
    self.logger.propagate = self.propagate

  def emit(self, record):
    self.records.append(record)

  def pass_on(self):
    for record in self.records:
      self.logger.handle(record)


def _read_examples(source, count: int, chunk: int = 1024):
  """Examples 0..count-1, fetched in batches where the data source supports it."""
  batched = hasattr(source, '__getitems__')
  for start in range(0, count, chunk):
    keys = list(range(start, min(start + chunk, count)))
    if batched:
      try:
        yield from source.__getitems__(keys)
        continue
      except TypeError:  # some sources (e.g. tfds's mock) only index one at a time
        batched = False
    yield from (source[i] for i in keys)


def class_names(source: str) -> Sequence[str] | None:
  return {'cifar10': CIFAR10_CLASSES, 'mnist': tuple(str(d) for d in range(10))}.get(source)
