"""Reading PyTorch checkpoints for the converters, with clear errors instead of tracebacks.

Only the converters need torch; the files they write load without it.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from typing import Any, Callable, Mapping

import numpy as np

from basis_jax.errors import InputFileError, MissingDependencyError, MissingFileError


def read_state_dict(path: str, unwrap: Callable[[Any], Any] = lambda obj: obj
                    ) -> dict[str, np.ndarray]:
  """The state dict in `path` as float32 numpy arrays, DataParallel's `module.` removed.

  `unwrap` takes whatever `torch.load` returned to the state dict (each checkpoint layout
  nests it differently). A missing, truncated or foreign file is an InputFileError (a
  ValueError) naming it.
  """
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise MissingDependencyError(
        "Reading a PyTorch checkpoint needs torch (pip install -e '.[torch]'); converted "
        "weights load without it.") from e
  if not os.path.isfile(path):
    raise MissingFileError(f"Checkpoint not found: {path}")
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError,
          ValueError) as e:
    raise InputFileError(f"Cannot read {path}: the file is corrupt, truncated or not a PyTorch "
                         f"checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]}).") from e
  obj = unwrap(obj)
  if not isinstance(obj, Mapping):
    raise InputFileError(f"{path} holds a {type(obj).__name__}, expected a state dict.")
  state = {}
  for key, value in obj.items():
    if not isinstance(value, torch.Tensor):
      raise InputFileError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor.")
    key = key[len("module."):] if key.startswith("module.") else key
    state[key] = value.detach().cpu().float().numpy()
  return state
