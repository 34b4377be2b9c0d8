"""Datasets' own local file formats, read into a `Dataset`, checked against published checksums.

MNIST's four idx `.gz` files, CIFAR-10's python pickle batches (a folder, or the
`cifar-10-python.tar.gz` archive) or an `.npz`, and a folder of image files. Standard files
are checked against their published checksums, so a truncated download fails loudly instead
of shifting the results. `basis_jax.files.data.load` picks the reader that `config.data`
names; this module knows nothing of configs.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import re
import tarfile
import zipfile

import numpy as np
from absl import logging
from PIL import Image

from basis_jax.errors import ConfigError, InputFileError

# Published SHA-256 of the four MNIST `.gz` files (the values TFDS and torchvision check).
MNIST_SHA256 = {
    'train-images-idx3-ubyte.gz':
        '440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609',
    'train-labels-idx1-ubyte.gz':
        '3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c',
    't10k-images-idx3-ubyte.gz':
        '8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6',
    't10k-labels-idx1-ubyte.gz':
        'f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6',
}
# Published MD5 of CIFAR-10's python distribution (archive and each pickle batch).
CIFAR10_MD5 = {
    'cifar-10-python.tar.gz': 'c58f30108f718f92721af3b95e74349a',
    'data_batch_1': 'c99cafc152244af753f735de768cd75f',
    'data_batch_2': 'd4bba439e000b95fd0a9bffe97cbabec',
    'data_batch_3': '54ebc095f3ab1f0389bbae665268c751',
    'data_batch_4': '634d18415352ddfa80567beed471001a',
    'data_batch_5': '482c414d41f54cd18b22e5b47cb7c3cb',
    'test_batch': '40351d587109b95175f43aff81a1287e',
}
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp', '.tif', '.tiff')


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Images as float32 [N, H, W, C] in [0, 1]; labels int64 [N] or None."""
  name: str
  images: np.ndarray
  labels: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.images)


# ----------------------------------------------------------------------------- checksums


def file_digest(path: str, algorithm: str = 'sha256') -> str:
  """Hex digest of a file, read in 1 MiB pieces."""
  digest = hashlib.new(algorithm)
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def verify_checksum(path: str, expected: str, algorithm: str = 'sha256') -> None:
  """Raises InputFileError (a ValueError) when `path`'s digest differs from the published one."""
  actual = file_digest(path, algorithm)
  if actual != expected:
    raise InputFileError(
        f'Checksum mismatch for {path}: {algorithm} is {actual}, the published file has '
        f'{expected}; it is truncated, corrupt or not the standard distribution.',
        hint='download it again, or pass --config.data.verify_checksums=False for a file '
             'changed on purpose.')


# ----------------------------------------------------------------------------- MNIST


def read_idx(path: str) -> np.ndarray:
  """Reads an idx file (gzip-compressed or plain) into a uint8 array of its shape."""
  try:
    with open(path, 'rb') as f:
      raw = f.read()
    if raw[:2] == b'\x1f\x8b':
      raw = gzip.decompress(raw)
  except (OSError, EOFError, gzip.BadGzipFile) as e:
    raise InputFileError(f'Cannot decompress idx file {path}: {e}') from e
  if len(raw) < 4 or raw[0:2] != b'\x00\x00' or raw[2] != 0x08:
    raise InputFileError(f'{path} is not an unsigned-byte idx file (bad magic number '
                         f'{raw[:4].hex() or "<empty>"}).')
  ndim = raw[3]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise InputFileError(f'{path}: idx header is truncated.')
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
  expected = int(np.prod(shape)) + header
  if len(raw) != expected:
    raise InputFileError(f'{path}: idx header declares shape {shape} ({expected} bytes) but '
                         f'the file holds {len(raw)} bytes; it is truncated or corrupt.')
  return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_mnist_files(folder: str, split: str = 'test', *,
                     verify_checksums: bool = True) -> Dataset:
  """MNIST from the four standard idx files in `folder` (`.gz`, or uncompressed)."""
  prefix = {'test': 't10k', 'train': 'train'}.get(split)
  if prefix is None:
    raise ConfigError(f"MNIST split must be 'train' or 'test', got {split!r}.")
  if os.path.isfile(folder):
    raise InputFileError(f'config.data.path {folder} is a file; MNIST is read from the folder '
                         'that holds its four idx files.',
                         hint=f'--config.data.path={os.path.dirname(folder) or "."}')
  arrays = []
  for kind in ('images-idx3', 'labels-idx1'):
    name = f'{prefix}-{kind}-ubyte'
    path = os.path.join(folder, name + '.gz')
    if os.path.exists(path):
      if verify_checksums:
        verify_checksum(path, MNIST_SHA256[name + '.gz'])
    elif os.path.exists(os.path.join(folder, name)):
      path = os.path.join(folder, name)  # already decompressed: no published digest
    else:
      raise InputFileError(f'MNIST file {name}.gz not found in {folder}.')
    arrays.append(read_idx(path))
  images, labels = arrays
  if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
    raise InputFileError(f'MNIST files in {folder} disagree: images {images.shape}, '
                         f'labels {labels.shape}.')
  return Dataset(f'mnist_{split}', to_float(images[..., None]), labels.astype(np.int64))


# ----------------------------------------------------------------------------- CIFAR-10


def _unpickle_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
  # The standard batches are pickles, so only load files you trust.
  try:
    batch = pickle.loads(raw, encoding='bytes')
    data = np.asarray(batch[b'data'], dtype=np.uint8)
    labels = np.asarray(batch[b'labels'], dtype=np.int64)
  except Exception as e:  # pickle raises many types on bad input
    raise InputFileError(f'{where} is not a CIFAR-10 python batch: {e}') from e
  if data.shape != (len(labels), 3072):
    raise InputFileError(f'{where}: data has shape {data.shape}, expected [N, 3072].')
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _cifar_batch_names(split: str) -> list[str]:
  if split == 'train':
    return [f'data_batch_{i}' for i in range(1, 6)]
  if split == 'test':
    return ['test_batch']
  raise ConfigError(f"CIFAR-10 split must be 'train' or 'test', got {split!r}.")


def load_cifar10_files(path: str, split: str = 'test', *,
                       verify_checksums: bool = True) -> Dataset:
  """CIFAR-10 from the python batches (folder or .tar.gz) or from an `.npz`.

  An `.npz` holds `x_<split>` uint8 [N,32,32,3] and `y_<split>` (or one exact subset
  `x_<split>_first<N>`/`y_<split>_first<N>`, e.g. the first 1,000 test images), or JPEG streams
  `<split>_jpeg_data` + `<split>_jpeg_offsets` (image i is data[off[i]:off[i+1]]).
  """
  names = _cifar_batch_names(split)
  if path.endswith('.npz'):
    return _load_cifar10_npz(path, split)
  parts = []
  if os.path.isfile(path) and tarfile.is_tarfile(path):
    if verify_checksums and os.path.basename(path) == 'cifar-10-python.tar.gz':
      verify_checksum(path, CIFAR10_MD5['cifar-10-python.tar.gz'], 'md5')
    with tarfile.open(path) as tar:
      members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
      for name in names:
        if name not in members:
          raise InputFileError(f'{path} has no member {name}.')
        raw = tar.extractfile(members[name]).read()
        if verify_checksums and hashlib.md5(raw).hexdigest() != CIFAR10_MD5[name]:
          raise InputFileError(f'Checksum mismatch for {name} in {path}; download it again.')
        parts.append(_unpickle_batch(raw, f'{path}:{name}'))
  elif os.path.isdir(path):
    folder = path
    if os.path.isdir(os.path.join(path, 'cifar-10-batches-py')):
      folder = os.path.join(path, 'cifar-10-batches-py')
    for name in names:
      file = os.path.join(folder, name)
      if not os.path.exists(file):
        npz = sorted(f for f in os.listdir(folder) if f.endswith('.npz'))
        hint = (f'an .npz is read when data.path names the file: '
                f'--config.data.path={os.path.join(folder, npz[0])}' if npz else
                'data.path takes the cifar-10-batches-py folder, cifar-10-python.tar.gz '
                'or an .npz file.')
        raise InputFileError(f'CIFAR-10 batch {name} not found in {folder}.', hint=hint)
      if verify_checksums:
        verify_checksum(file, CIFAR10_MD5[name], 'md5')
      with open(file, 'rb') as f:
        parts.append(_unpickle_batch(f.read(), file))
  else:
    raise InputFileError(f'{path} is neither a CIFAR-10 folder, a .tar.gz nor an .npz.')
  images = np.concatenate([p[0] for p in parts])
  labels = np.concatenate([p[1] for p in parts])
  return Dataset(f'cifar10_{split}', to_float(images), labels)


def _cifar10_npz_keys(keys: set[str], split: str) -> tuple[str | None, str | None]:
  """The (images, labels) keys of `split` in an .npz: x_<split>/y_<split>, or one exact
  subset x_<split>_first<N>/y_<split>_first<N> (e.g. x_test_first1000: test images 0-999)."""
  if f'x_{split}' in keys and f'y_{split}' in keys:
    return f'x_{split}', f'y_{split}'
  subsets = sorted(k for k in keys if re.fullmatch(rf'x_{split}_first\d+', k)
                   and 'y' + k[1:] in keys)
  if len(subsets) == 1:
    return subsets[0], 'y' + subsets[0][1:]
  return None, None


def _load_cifar10_npz(path: str, split: str) -> Dataset:
  lossy = False
  if os.path.isfile(path) and not zipfile.is_zipfile(path):
    raise InputFileError(f'{path} is not an .npz archive (np.savez writes a zip file; this '
                         'is not one, or it is truncated).',
                         hint='data.path takes the cifar-10-batches-py folder, '
                              'cifar-10-python.tar.gz or an .npz written by np.savez.')
  try:
    arrays = np.load(path)
  except (OSError, ValueError) as e:
    raise InputFileError(f'Cannot read {path} as an .npz: {e}') from e
  with arrays:
    keys = set(arrays.files)
    x_key, y_key = _cifar10_npz_keys(keys, split)
    if x_key is not None:
      images = arrays[x_key]
      labels = arrays[y_key]
    elif f'{split}_jpeg_data' in keys and f'{split}_jpeg_offsets' in keys and \
        f'y_{split}' in keys:
      data, offsets = arrays[f'{split}_jpeg_data'], arrays[f'{split}_jpeg_offsets']
      # JPEG is lossy: these are not CIFAR-10's exact pixels, so PSNR/FID differ from runs
      # on the exact data; the dataset name says so (and keys caches apart).
      logging.warning('%s holds JPEG-compressed CIFAR-10: pixels are lossy, not the exact '
                      'CIFAR-10 values.', path)
      lossy = True
      images = np.stack([
          np.asarray(Image.open(io.BytesIO(data[a:b].tobytes())).convert('RGB'))
          for a, b in zip(offsets[:-1], offsets[1:])])
      labels = arrays[f'y_{split}']
    else:
      raise InputFileError(
          f'{path} holds {sorted(keys)}; expected x_{split} and y_{split} '
          f'(or {split}_jpeg_data, {split}_jpeg_offsets and y_{split}).',
          hint=f'save it as np.savez(path, x_{split}=images_uint8_NHWC, y_{split}=labels), '
               'or point data.path at the cifar-10-batches-py folder.')
  if images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(labels):
    raise InputFileError(f'{path}: images {images.shape} and labels {labels.shape} are not '
                         'CIFAR-10 shaped ([N,32,32,3] and [N]).')
  return Dataset(f'cifar10_{split}' + ('_jpeg' if lossy else ''), to_float(images),
                 np.asarray(labels, np.int64))


# ----------------------------------------------------------------------------- image files


def list_image_files(folder: str) -> list[str]:
  """Image files under `folder` (recursively), in sorted order."""
  if not os.path.isdir(folder):
    raise InputFileError(f'Image folder {folder} does not exist.')
  files = []
  for root, _, names in os.walk(folder):
    files += [os.path.join(root, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
  if not files:
    raise InputFileError(f'No image files ({", ".join(IMAGE_EXTENSIONS)}) in {folder}.')
  return sorted(files)


def read_image(path: str, channels: int = 3) -> np.ndarray:
  """One image file as uint8 [H, W, channels] (channels 1 = grayscale, 3 = RGB)."""
  if channels not in (1, 3):
    raise ConfigError(f'channels must be 1 or 3, got {channels}.')
  try:
    with Image.open(path) as img:
      array = np.asarray(img.convert('L' if channels == 1 else 'RGB'))
  except OSError as e:
    raise InputFileError(f'Cannot read image {path}: {e}') from e
  return array[..., None] if channels == 1 else array


def centre_crop_resize(image: np.ndarray, resolution: int) -> np.ndarray:
  """Square centre crop, then a Lanczos (antialiased) resize to resolution x resolution."""
  h, w = image.shape[:2]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  crop = image[top:top + side, left:left + side]
  if side == resolution:
    return crop
  squeeze = crop.shape[-1] == 1
  img = Image.fromarray(crop[..., 0] if squeeze else crop)
  out = np.asarray(img.resize((resolution, resolution), Image.Resampling.LANCZOS))
  return out[..., None] if squeeze else out


def load_image_folder(folder: str, *, resolution: int | None = None,
                      channels: int = 3) -> Dataset:
  """Every image under `folder`, RGB by default; all one size unless `resolution` is set."""
  files = list_image_files(folder)
  images = [read_image(f, channels) for f in files]
  if resolution is not None:
    images = [centre_crop_resize(im, resolution) for im in images]
  else:
    sizes = {}
    for f, im in zip(files, images):
      sizes.setdefault(im.shape[:2], f)
    if len(sizes) > 1:
      listed = ', '.join(f'{h}x{w} ({os.path.basename(f)})' for (h, w), f in sizes.items())
      raise InputFileError(f'Images in {folder} have different sizes: {listed}. Set '
                           'config.data.resolution to centre-crop and resize them.')
  return Dataset(os.path.basename(os.path.normpath(folder)), to_float(np.stack(images)))


def to_float(images: np.ndarray) -> np.ndarray:
  """8-bit images -> [0, 1]; float images must already be in [0, 1] and are kept."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return (images.astype(np.float32) / 255.0).astype(np.float32)
  if np.issubdtype(images.dtype, np.floating):
    if images.size and not (np.isfinite(images).all() and images.min() >= 0
                            and images.max() <= 1):
      raise InputFileError(
          f'Float images must lie in [0, 1]; got values in [{np.nanmin(images):.4g}, '
          f'{np.nanmax(images):.4g}] (NaN or inf: {not np.isfinite(images).all()}).')
    return images.astype(np.float32)
  raise InputFileError(f'Images must be uint8 (0..255) or float in [0, 1], got dtype '
                              f'{images.dtype}.')
