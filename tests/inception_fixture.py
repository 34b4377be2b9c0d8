"""A deterministic, torch-free stand-in for pytorch-fid's Inception weights and inputs.

The golden outputs in fixtures/inception_golden.npz were produced by pytorch-fid's own
InceptionV3 loaded with `random_torch_state_dict(SEED)` (see make_inception_golden.py), so
the JAX network can be checked against it on machines without torchvision.
"""

import zlib

import numpy as np

from convert_weights import inception as converter
from basis_jax.evaluation import inception

SEED = 20151205
GOLDEN = 'inception_golden.npz'


def random_torch_state_dict(seed: int = SEED) -> dict[str, np.ndarray]:
  """pytorch-fid-layout weights drawn per key, He-scaled so activations stay O(1)."""
  state = {}
  for name, shape in inception.param_shapes().items():
    key = converter.torch_name(name)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    leaf = name.rsplit('.', 1)[1]
    if name.endswith('conv.kernel'):
      fan_in = shape[0] * shape[1] * shape[2]
      value = rng.normal(size=shape) * np.sqrt(2.0 / fan_in)
    elif name == 'fc.kernel':
      value = rng.normal(size=shape) * np.sqrt(1.0 / shape[0])
    elif leaf == 'scale':
      value = rng.uniform(0.8, 1.2, shape)
    elif leaf == 'var':
      value = rng.uniform(0.5, 1.5, shape)
    else:  # bn bias, bn mean, fc bias
      value = rng.normal(size=shape) * 0.1
    state[key] = converter.to_torch_layout(name, value.astype(np.float32))
  return state


def golden_inputs(seed: int = SEED) -> list[np.ndarray]:
  """Two batches in [0, 1]: CIFAR-sized (upsampled to 299) and larger (downsampled)."""
  rng = np.random.default_rng(seed)
  return [rng.random((3, 32, 32, 3), dtype=np.float32),
          rng.random((2, 331, 317, 3), dtype=np.float32)]


def fid_features(seed: int = SEED, n: int = 400, dim: int = 64):
  """Two correlated Gaussian feature sets with different means and covariances."""
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim)) * 0.3
  b = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim)) * 0.3 + 0.2
  return a, b
