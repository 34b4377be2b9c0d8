"""Writes tests/fixtures/ncsn_golden_{mnist,cifar10}.npz from the PyTorch reference.

    PYTHONPATH=. python tests/make_ncsn_fixtures.py

Each file holds a reduced-width (ngf=4) reference state dict with its DataParallel keys
('sd/module.…'), random inputs `x` [B,H,W,C] in [0,1] and the reference scores `scores`
[levels, B, H, W, C] at every noise level, so the parity test runs without torch.
"""

import json
import os
import platform

import numpy as np
import torch

from tests.reference import torch_ncsn

GOLDEN = {"mnist": (1, 28), "cifar10": (3, 32)}
NGF, BATCH, LEVELS = 4, 2, 10


def main():
  out_dir = os.path.join(os.path.dirname(__file__), "fixtures")
  for seed, (dataset, (channels, size)) in enumerate(GOLDEN.items()):
    path = os.path.join(out_dir, f"ncsn_golden_{dataset}.pth")
    model = torch_ncsn.make_checkpoint(path, channels, NGF, LEVELS, seed=seed)
    state = torch.load(path, weights_only=True)[0]
    os.remove(path)
    x = np.random.default_rng(seed).uniform(size=(BATCH, size, size, channels)).astype(np.float32)
    scores = []
    with torch.no_grad():
      for level in range(LEVELS):
        y = torch.full((BATCH,), level, dtype=torch.long)
        s = model(torch.from_numpy(x.transpose(0, 3, 1, 2)), y).numpy()
        scores.append(s.transpose(0, 2, 3, 1))
    arrays = {f"sd/{k}": v.numpy() for k, v in state.items()}
    np.savez_compressed(os.path.join(out_dir, f"ncsn_golden_{dataset}.npz"), x=x,
                        scores=np.stack(scores), ngf=NGF, torch_version=torch.__version__,
                        provenance=provenance(), **arrays)


def provenance() -> str:
  """What wrote the fixture, as JSON (every golden file carries one)."""
  return json.dumps({"generator": "tests/make_ncsn_fixtures.py",
                     "reference": "tests/reference/torch_ncsn.py", "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()})


if __name__ == "__main__":
  main()
