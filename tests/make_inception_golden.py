"""Regenerates fixtures/inception_golden.npz with pytorch-fid (needs torch + torchvision).

  /path/to/venv-with-pytorch-fid/bin/python tests/make_inception_golden.py
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import inception_fixture  # pylint: disable=g-import-not-at-top,wrong-import-position


def torch_fid_outputs(state: dict[str, np.ndarray], batches: list[np.ndarray]):
  """pytorch-fid's InceptionV3 with `state` instead of the downloaded weights."""
  import torch  # pylint: disable=g-import-not-at-top
  from pytorch_fid import inception as fid_inception  # pylint: disable=g-import-not-at-top
  tensors = {k: torch.from_numpy(v) for k, v in state.items()}
  for k in list(tensors):
    if k.endswith('running_var'):
      tensors[k.replace('running_var', 'num_batches_tracked')] = torch.tensor(0)
  original = fid_inception.load_state_dict_from_url
  fid_inception.load_state_dict_from_url = lambda *a, **kw: tensors
  try:
    model = fid_inception.InceptionV3([3], resize_input=True, normalize_input=True).eval()
  finally:
    fid_inception.load_state_dict_from_url = original
  pools, logits = [], []
  with torch.no_grad():
    for batch in batches:
      x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
      pool = model(x)[0][:, :, 0, 0]
      pools.append(pool.numpy())
      logits.append(torch.nn.functional.linear(pool, tensors['fc.weight'],
                                               tensors['fc.bias']).numpy())
  return np.concatenate(pools), np.concatenate(logits)


def main():
  from pytorch_fid.fid_score import calculate_frechet_distance  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(2)
  pool, logits = torch_fid_outputs(inception_fixture.random_torch_state_dict(),
                                   inception_fixture.golden_inputs())
  a, b = inception_fixture.fid_features()
  fid = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                                   np.cov(b, rowvar=False))
  path = os.path.join(os.path.dirname(__file__), 'fixtures', inception_fixture.GOLDEN)
  import json  # pylint: disable=g-import-not-at-top
  import platform  # pylint: disable=g-import-not-at-top
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  provenance = json.dumps({'generator': 'tests/make_inception_golden.py',
                           'pytorch-fid': metadata.version('pytorch-fid'),
                           'torch': torch.__version__, 'numpy': np.__version__,
                           'python': platform.python_version()})
  np.savez_compressed(path, pool=pool, logits=logits, fid=np.float64(fid),
                      provenance=provenance)
  print(f'wrote {path}: pool {pool.shape} |max| {np.abs(pool).max():.3g}, logits '
        f'{logits.shape} |max| {np.abs(logits).max():.3g}, fid {fid:.6f}')


if __name__ == '__main__':
  main()
