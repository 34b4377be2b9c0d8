r"""Converts pytorch-fid's FID Inception weights to the `.npz` that basis_jax loads.

Run once (needs PyTorch, `pip install 'basis-jax[torch]'`; torchvision is not needed):

  python -m convert_weights.inception \
      --input=pt_inception-2015-12-05-6726825d.pth \
      --output=~/.cache/basis_jax/inception_fid.npz

The input is the release asset "fid_weights/pt_inception-2015-12-05-6726825d.pth" of the
pytorch-fid project; this code cannot download it. Its name carries the first 8 hex
digits of its SHA-256, which is checked. Layout changes: conv kernels OIHW -> HWIO, the
final linear layer [out, in] -> [in, out], batch-norm running statistics kept,
`num_batches_tracked` dropped.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from basis_jax.files import atomic, data_formats

from basis_jax import errors

from basis_jax.evaluation import inception
from basis_jax.errors import InputFileError
from convert_weights import torch_io

_BN_NAMES = {'weight': 'scale', 'bias': 'bias', 'running_mean': 'mean',
             'running_var': 'var'}


def torch_name(flax_name: str) -> str:
  """The pytorch-fid state-dict key of a basis_jax weight name."""
  *path, leaf = flax_name.split('.')
  if path[-1] == 'conv':
    return '.'.join(path + ['weight'])
  if path[-1] == 'bn':
    return '.'.join(path + [{v: k for k, v in _BN_NAMES.items()}[leaf]])
  return '.'.join(path + [{'kernel': 'weight', 'bias': 'bias'}[leaf]])


def to_torch_layout(flax_name: str, value: np.ndarray) -> np.ndarray:
  if flax_name.endswith('conv.kernel'):
    return value.transpose(3, 2, 0, 1)
  if flax_name == 'fc.kernel':
    return value.T
  return value


def convert_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """pytorch-fid Inception state dict (numpy arrays) -> basis_jax flat weight names."""
  shapes = inception.param_shapes()
  known = {torch_name(name): name for name in shapes}
  unexpected = sorted(k for k in state_dict
                      if k not in known and not k.endswith('num_batches_tracked'))
  missing = sorted(set(known) - set(state_dict))
  if unexpected or missing:
    raise InputFileError('Not the FID Inception state dict (pytorch-fid layout): missing '
                         f'{missing[:5]}, unexpected {unexpected[:5]}.')
  params = {}
  for key, name in known.items():
    value = np.asarray(state_dict[key], np.float32)
    if name.endswith('conv.kernel'):
      value = value.transpose(2, 3, 1, 0)
    elif name == 'fc.kernel':
      value = value.T
    if value.shape != shapes[name]:
      raise InputFileError(f'{key}: shape {value.shape} after conversion, expected '
                           f'{shapes[name]}.')
    params[name] = np.ascontiguousarray(value)
  return params


def convert_file(path: str, verify: bool = True) -> dict[str, np.ndarray]:
  """Reads pytorch-fid's `.pth` (with torch) and converts it.

  The file's SHA-256 must start with pytorch-fid's published prefix whatever its name
  (`verify=False` only for test networks). The output records it under SOURCE_DIGEST_KEY,
  which `inception.load` checks.
  """
  digest = data_formats.file_digest(path)
  if verify and not digest.startswith(inception.TORCH_WEIGHTS_SHA256_PREFIX):
    raise errors.InputFileError(
        f'{path}: SHA-256 {digest} does not start with '
        f'{inception.TORCH_WEIGHTS_SHA256_PREFIX}, the digest of pytorch-fid\'s '
        f'{inception.TORCH_WEIGHTS_NAME}; the download is corrupt, truncated or another file.')
  params = convert_state_dict(torch_io.read_state_dict(path))
  params[inception.SOURCE_DIGEST_KEY] = np.asarray(digest)
  return params


def define_flags(flag_values=None) -> None:
  """CLI flags, defined only when run as a program (tests import several converters)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values
  flags.DEFINE_string('input', inception.TORCH_WEIGHTS_NAME, "pytorch-fid's .pth file.",
                      flag_values=flag_values)
  flags.DEFINE_string('output', inception.DEFAULT_WEIGHTS, 'Where to write the .npz.',
                      flag_values=flag_values)


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  output = os.path.expanduser(flags.FLAGS.output)
  params = convert_file(os.path.expanduser(flags.FLAGS.input))
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  atomic.save_npz(output, **params)
  weights = {k: v for k, v in params.items() if k != inception.SOURCE_DIGEST_KEY}
  print(f'Wrote {len(weights)} arrays '
        f'({sum(v.size for v in weights.values()):,} parameters) to {output}')


if __name__ == '__main__':
  from basis_jax import cli  # pylint: disable=g-import-not-at-top
  define_flags()
  cli.run(main)
