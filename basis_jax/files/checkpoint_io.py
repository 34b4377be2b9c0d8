"""The project's compact weights format, shared by every prior.

One `.npz` file: one array per parameter, keyed by its flattened pytree path ('a/b/0/c'),
plus a JSON metadata entry (`__metadata__`: format version, architecture, config, ...).
It loads with numpy alone (no torch, no orbax), is written atomically (`basis_jax.files.atomic`),
and loading checks every key and shape against the model's abstract state.

    checkpoint_io.save_params(path, {'params': params, 'ema': ema}, {'architecture': ...})
    state, metadata = checkpoint_io.load_params(path, {'params': abstract, 'ema': abstract})

Works on any pytree whose leaves are arrays (nnx.State, dicts, optax states).
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from basis_jax.files import atomic
from basis_jax.errors import InputFileError

FORMAT_VERSION = 1
_METADATA_KEY = "__metadata__"


class CheckpointError(InputFileError):
  """A weights file that is unreadable or does not fit the model."""


def _key_str(entry) -> str | None:
  if isinstance(entry, jax.tree_util.DictKey):
    return str(entry.key)
  if isinstance(entry, jax.tree_util.SequenceKey):
    return str(entry.idx)
  if isinstance(entry, jax.tree_util.GetAttrKey):
    # nnx.Variable leaves flatten through `.value`; that level is not part of the name.
    return None if entry.name == "value" else entry.name
  if isinstance(entry, jax.tree_util.FlattenedIndexKey):
    return str(entry.key)
  return str(entry)


def flatten(tree) -> tuple[dict[str, Any], Any]:
  """{'a/b/c': leaf} and the treedef, in leaf order."""
  leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
  flat = {}
  for path, leaf in leaves_with_path:
    name = "/".join(s for s in (_key_str(e) for e in path) if s is not None)
    if name in flat:
      raise ValueError(f"Two leaves flatten to the same key {name!r}.")
    flat[name] = leaf
  return flat, treedef


def save_params(path: str, state, metadata: Mapping[str, Any] | None = None, *,
                compress: bool = False, float16: bool = False) -> None:
  """Writes `state` (any pytree of arrays) and JSON-able `metadata` to `path` atomically
  (`compress`: deflated entries, still read by np.load; `float16`: floating arrays stored in
  16 bits, half the size; `load_params` restores the model's dtype, float32)."""
  flat, _ = flatten(state)
  arrays = {k: np.asarray(jax.device_get(v)) for k, v in flat.items()}
  if _METADATA_KEY in arrays:
    raise ValueError(f"{_METADATA_KEY!r} is reserved.")
  if float16:
    arrays = {k: v.astype(np.float16) if np.issubdtype(v.dtype, np.floating) else v
              for k, v in arrays.items()}
  meta = {"format_version": FORMAT_VERSION, **(metadata or {}),
          **({"stored_dtype": "float16"} if float16 else {})}
  arrays[_METADATA_KEY] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
  atomic.save_npz(path, compress=compress, **arrays)


def _open(path: str):
  if not os.path.exists(path):
    raise CheckpointError(f"Weights file not found: {path}")
  try:
    return np.load(path, allow_pickle=False)
  except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
    raise CheckpointError(f"{path} is not a readable weights file (.npz): {e}") from e


def _read_all(path: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  with _open(path) as data:
    try:
      arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
      raise CheckpointError(f"{path} is corrupt or truncated: {e}") from e
  if _METADATA_KEY not in arrays:
    raise CheckpointError(f"{path} has no {_METADATA_KEY} entry; not a basis-jax weights file.")
  metadata = json.loads(arrays.pop(_METADATA_KEY).tobytes().decode())
  if metadata.get("format_version") != FORMAT_VERSION:
    raise CheckpointError(f"{path} has format version {metadata.get('format_version')}, "
                          f"this code reads version {FORMAT_VERSION}.")
  return arrays, metadata


def read_metadata(path: str) -> dict[str, Any]:
  with _open(path) as data:
    if _METADATA_KEY not in data.files:
      raise CheckpointError(f"{path} has no {_METADATA_KEY} entry; "
                            "not a basis-jax weights file.")
    try:
      return json.loads(data[_METADATA_KEY].tobytes().decode())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
      raise CheckpointError(f"{path} is corrupt or truncated: {e}") from e


def copy_groups(src: str, dst: str, groups: Sequence[str], *, compress: bool = False,
                float16: bool = False) -> dict[str, Any]:
  """Writes to `dst` the top-level groups of `src` named in `groups` (e.g. params and EMA
  of a training state, without its optimizer moments), with the same metadata; returns it.
  `compress`, `float16`: as `save_params`."""
  arrays, metadata = _read_all(src)
  present = top_groups(arrays)
  missing = [g for g in groups if g not in present]
  if missing:
    raise CheckpointError(f"{src} has no {', '.join(missing)} group(s); it holds "
                          f"{', '.join(sorted(present))}.")
  kept = {k: v for k, v in arrays.items() if k.split("/", 1)[0] in groups}
  metadata = {k: v for k, v in metadata.items() if k != "format_version"}
  save_params(dst, kept, metadata, compress=compress, float16=float16)
  return metadata


def list_keys(path: str) -> list[str]:
  with _open(path) as data:
    return [k for k in data.files if k != _METADATA_KEY]


def top_groups(keys) -> set[str]:
  """The top-level groups of flattened keys: {"params", "ema"} for `params/...`, `ema/...`."""
  return {k.split("/", 1)[0] for k in keys}


def list_groups(path: str) -> set[str]:
  """The top-level groups of a weights file (e.g. params, ema, opt_state, stages)."""
  return top_groups(list_keys(path))


def check_keys(expected: Mapping[str, tuple], found: Mapping[str, tuple], source: str,
               allow_unexpected: bool = False) -> None:
  """Raises CheckpointError naming every missing, unexpected and mis-shaped key."""
  missing = sorted(set(expected) - set(found))
  unexpected = [] if allow_unexpected else sorted(set(found) - set(expected))
  misshaped = sorted(f"{k}: file {tuple(found[k])}, model {tuple(expected[k])}"
                     for k in set(expected) & set(found)
                     if tuple(found[k]) != tuple(expected[k]))
  if missing or unexpected or misshaped:
    lines = [f"{source} does not match the model:"]
    for title, items in (("missing", missing), ("unexpected", unexpected),
                         ("wrong shape", misshaped)):
      if items:
        lines.append(f"  {len(items)} {title}: " + ", ".join(items))
    raise CheckpointError("\n".join(lines))


def load_params(path: str, abstract_state, allow_unexpected: bool = False):
  """Reads `path` into a pytree shaped like `abstract_state`; returns (state, metadata).

  `abstract_state`'s leaves may be arrays or `jax.ShapeDtypeStruct`s; loaded arrays take
  their dtypes. Every key of the model must be in the file with the same shape, and (unless
  `allow_unexpected`) the file may hold nothing else.
  """
  arrays, metadata = _read_all(path)
  flat, treedef = flatten(abstract_state)
  check_keys({k: v.shape for k, v in flat.items()}, {k: v.shape for k, v in arrays.items()},
             path, allow_unexpected)
  leaves = [jax.numpy.asarray(arrays[k], dtype=v.dtype) for k, v in flat.items()]
  return jax.tree_util.tree_unflatten(treedef, leaves), metadata
