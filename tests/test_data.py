"""Data loaders: local files in their standard layouts, tfds (mocked), bad input."""

import gzip
import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from basis_jax.files import data, data_formats

from basis_jax import errors


def _idx_bytes(array: np.ndarray) -> bytes:
  header = bytes([0, 0, 8, array.ndim]) + b''.join(
      int(d).to_bytes(4, 'big') for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


def write_mnist(folder, n=6, split='t10k', seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
  labels = np.arange(n, dtype=np.uint8) % 10
  os.makedirs(folder, exist_ok=True)
  for kind, array in (('images-idx3', images), ('labels-idx1', labels)):
    with open(os.path.join(folder, f'{split}-{kind}-ubyte.gz'), 'wb') as f:
      f.write(gzip.compress(_idx_bytes(array)))
  return images, labels


def test_mnist_idx_files(tmp_path):
  images, labels = write_mnist(str(tmp_path))
  ds = data_formats.load_mnist_files(str(tmp_path), 'test', verify_checksums=False)
  assert ds.images.shape == (6, 28, 28, 1) and ds.images.dtype == np.float32
  np.testing.assert_allclose(ds.images[..., 0] * 255, images, atol=1e-4)
  np.testing.assert_array_equal(ds.labels, labels)


def test_mnist_checksum_mismatch_is_clear(tmp_path):
  write_mnist(str(tmp_path))
  with pytest.raises(ValueError, match='Checksum mismatch.*t10k-images'):
    data_formats.load_mnist_files(str(tmp_path), 'test')


def test_corrupt_idx_files(tmp_path):
  write_mnist(str(tmp_path))
  path = str(tmp_path / 't10k-images-idx3-ubyte.gz')
  raw = gzip.decompress(open(path, 'rb').read())
  with open(path, 'wb') as f:  # valid gzip, truncated content
    f.write(gzip.compress(raw[:-100]))
  with pytest.raises(ValueError, match='truncated or corrupt'):
    data_formats.load_mnist_files(str(tmp_path), 'test', verify_checksums=False)
  with open(path, 'wb') as f:  # a cut-off gzip stream
    f.write(gzip.compress(raw)[:200])
  with pytest.raises(ValueError, match='Cannot decompress'):
    data_formats.load_mnist_files(str(tmp_path), 'test', verify_checksums=False)
  with open(path, 'wb') as f:
    f.write(b'<html>not found</html>')
  with pytest.raises(ValueError, match='bad magic'):
    data_formats.load_mnist_files(str(tmp_path), 'test', verify_checksums=False)
  with pytest.raises(ValueError, match='not found'):
    data_formats.load_mnist_files(str(tmp_path), 'train', verify_checksums=False)


def _cifar_batch(n, seed):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  labels = list(rng.integers(0, 10, n))
  batch = {b'data': images.transpose(0, 3, 1, 2).reshape(n, -1), b'labels': labels}
  return images, np.array(labels), pickle.dumps(batch)


def test_cifar10_pickle_folder_archive_and_npz(tmp_path):
  images, labels, raw = _cifar_batch(5, 0)
  folder = tmp_path / 'cifar-10-batches-py'
  folder.mkdir()
  (folder / 'test_batch').write_bytes(raw)
  ds = data_formats.load_cifar10_files(str(tmp_path), 'test', verify_checksums=False)
  np.testing.assert_allclose(ds.images * 255, images, atol=1e-4)  # NHWC, RGB order
  np.testing.assert_array_equal(ds.labels, labels)
  with pytest.raises(ValueError, match='Checksum mismatch'):
    data_formats.load_cifar10_files(str(tmp_path), 'test')

  archive = tmp_path / 'cifar.tar.gz'
  with tarfile.open(archive, 'w:gz') as tar:
    tar.add(folder / 'test_batch', arcname='cifar-10-batches-py/test_batch')
  ds = data_formats.load_cifar10_files(str(archive), 'test', verify_checksums=False)
  np.testing.assert_allclose(ds.images * 255, images, atol=1e-4)

  np.savez(tmp_path / 'c.npz', x_test=images, y_test=labels)
  ds = data.load({'source': 'cifar10', 'path': str(tmp_path / 'c.npz')})
  np.testing.assert_allclose(ds.images * 255, images, atol=1e-4)

  streams = []
  for im in images:
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, format='PNG')  # any Pillow-readable stream works
    streams.append(np.frombuffer(buf.getvalue(), np.uint8))
  offsets = np.cumsum([0] + [len(s) for s in streams])
  np.savez(tmp_path / 'j.npz', test_jpeg_data=np.concatenate(streams),
           test_jpeg_offsets=offsets, y_test=labels)
  ds = data_formats.load_cifar10_files(str(tmp_path / 'j.npz'), 'test')
  np.testing.assert_allclose(ds.images * 255, images, atol=1e-4)

  (folder / 'test_batch').write_bytes(b'garbage')
  with pytest.raises(ValueError, match='not a CIFAR-10 python batch'):
    data_formats.load_cifar10_files(str(tmp_path), 'test', verify_checksums=False)


def test_checksums_of_standard_files_are_published_values(tmp_path):
  path = tmp_path / 'f'
  path.write_bytes(b'abc')
  data_formats.verify_checksum(str(path), hashlib.sha256(b'abc').hexdigest())
  with pytest.raises(ValueError, match='Checksum mismatch'):
    data_formats.verify_checksum(str(path), '0' * 64)


def _write_png(path, h, w, value=128):
  Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def test_image_folder(tmp_path):
  (tmp_path / 'sub').mkdir()
  _write_png(tmp_path / 'a.png', 8, 8, 10)
  _write_png(tmp_path / 'sub' / 'b.png', 8, 8, 20)
  ds = data.load({'source': 'image_folder', 'path': str(tmp_path)})
  assert ds.images.shape == (2, 8, 8, 3) and ds.labels is None
  np.testing.assert_allclose(ds.images[:, 0, 0, 0] * 255, [10, 20], atol=1e-4)

  _write_png(tmp_path / 'c.png', 12, 16)
  with pytest.raises(ValueError, match='different sizes.*resolution'):
    data.load({'source': 'image_folder', 'path': str(tmp_path)})
  ds = data.load({'source': 'image_folder', 'path': str(tmp_path), 'resolution': 4})
  assert ds.images.shape == (3, 4, 4, 3)
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ValueError, match='No image files'):
    data_formats.load_image_folder(str(tmp_path / 'empty'))
  with pytest.raises(ValueError, match='does not exist'):
    data_formats.load_image_folder(str(tmp_path / 'missing'))


def test_tfds_sources_mocked():
  with tfds.testing.mock_data(num_examples=12):
    ds = data.load({'source': 'mnist', 'split': 'test', 'num_examples': 5})
    assert ds.images.shape == (5, 28, 28, 1) and ds.labels.shape == (5,)
    assert 0 <= ds.images.min() and ds.images.max() <= 1
    ds = data.load({'source': 'cifar10', 'split': 'test', 'num_examples': 3})
    assert ds.images.shape == (3, 32, 32, 3)
    # LSUN images vary in size: centre crop + resize to 64 (the Glow LSUN resolution).
    ds = data.load({'source': 'lsun_church', 'num_examples': 2})
    assert ds.images.shape == (2, 64, 64, 3) and ds.labels is None
    ds = data.load({'source': 'tfds', 'tfds_name': 'lsun/bedroom', 'split': 'train',
                    'resolution': 16, 'num_examples': 2})
    assert ds.images.shape == (2, 16, 16, 3)


def test_tfds_not_prepared_is_clear(tmp_path):
  with pytest.raises(ValueError, match='is not prepared in') as error:
    data.load({'source': 'mnist', 'tfds_data_dir': str(tmp_path)})
  assert 'tfds build mnist' in error.value.hint


def test_unknown_source():
  with pytest.raises(ValueError, match='Unknown config.data.source'):
    data.load({'source': 'imagenet'})
  with pytest.raises(ValueError, match='no local-file'):
    data.load({'source': 'lsun_church', 'path': '/tmp'})


def test_tfds_examples_are_read_in_batches():
  class Source:
    calls = []

    def __len__(self):
      return 5

    def __getitem__(self, i):
      return {'i': i}

    def __getitems__(self, keys):
      Source.calls.append(list(keys))
      return [{'i': i} for i in keys]

  got = [e['i'] for e in data._read_examples(Source(), 5, chunk=2)]
  assert got == [0, 1, 2, 3, 4] and Source.calls == [[0, 1], [2, 3], [4]]


def test_cifar10_npz_float_pixels_checksum_and_lossy_jpeg(tmp_path, caplog):
  images, labels, _ = _cifar_batch(4, 0)
  unit = images.astype(np.float32) / 255
  np.savez(tmp_path / 'f.npz', x_test=unit, y_test=labels)
  ds = data.load({'source': 'cifar10', 'path': str(tmp_path / 'f.npz')})
  np.testing.assert_array_equal(ds.images, unit)  # Not divided by 255 a second time.
  np.savez(tmp_path / 'bad.npz', x_test=unit * 255, y_test=labels)
  with pytest.raises(errors.InputFileError, match=r'Float images must lie in \[0, 1\]'):
    data.load({'source': 'cifar10', 'path': str(tmp_path / 'bad.npz')})
  digest = data_formats.file_digest(str(tmp_path / 'f.npz'))
  data.load({'source': 'cifar10', 'path': str(tmp_path / 'f.npz'), 'sha256': digest})
  with pytest.raises(ValueError, match='Checksum mismatch'):
    data.load({'source': 'cifar10', 'path': str(tmp_path / 'f.npz'), 'sha256': '0' * 64})
  streams = []
  for im in images:
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, format='JPEG')
    streams.append(np.frombuffer(buf.getvalue(), np.uint8))
  np.savez(tmp_path / 'j.npz', test_jpeg_data=np.concatenate(streams),
           test_jpeg_offsets=np.cumsum([0] + [len(s) for s in streams]), y_test=labels)
  caplog.set_level('WARNING')
  ds = data.load({'source': 'cifar10', 'path': str(tmp_path / 'j.npz')})
  assert ds.name == 'cifar10_test_jpeg'
  assert any('pixels are lossy' in r.getMessage() for r in caplog.records)
