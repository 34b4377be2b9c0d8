"""Running a pure batch function over every device: a 1-D mesh and NamedSharding.

The design's "pmap over devices" is realised the way current JAX recommends (pmap is in
maintenance mode): one `jit` with the batch axis sharded over a 1-D mesh named 'batch'.
XLA partitions the whole compiled schedule; parameters are replicated. A batch whose size
is not a multiple of the device count is padded (with copies of its last row, which are
discarded), so callers can pass any N.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

BATCH_AXIS = "batch"


def initialize_distributed(config=None) -> None:
  """Multi-host start-up behind a config switch (`config.enabled`).

  On Slurm, TPU pods and other supported clusters jax.distributed finds the coordinator
  by itself; elsewhere give `coordinator_address`, `num_processes` and `process_id`.
  """
  if config is not None and config.get("enabled", False) and not _distributed_started():
    kwargs = {}
    if config.get("coordinator_address"):
      kwargs["coordinator_address"] = config.coordinator_address
    if config.get("num_processes", 0) > 0:
      kwargs["num_processes"] = config.num_processes
    if config.get("process_id", -1) >= 0:
      kwargs["process_id"] = config.process_id
    jax.distributed.initialize(**kwargs)
  logging.info("JAX process %d of %d; %d local / %d global devices (%s).", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.devices()[0].platform)


def _distributed_started() -> bool:
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  return distributed.global_state.client is not None


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh over `devices` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else list(devices)
  return jax.sharding.Mesh(np.asarray(devices), (BATCH_AXIS,))


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXIS))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def pad_batch(array: np.ndarray, multiple: int) -> np.ndarray:
  """Pads axis 0 up to a multiple of `multiple` by repeating the last row."""
  n = array.shape[0]
  padded = -(-n // multiple) * multiple
  if padded == n:
    return array
  return np.concatenate([array, np.repeat(array[-1:], padded - n, axis=0)], axis=0)


def map_chunks(fn: Callable[..., Any], arrays: Sequence[np.ndarray], chunk: int):
  """fn(*parts) over the leading axis of `arrays` (equal lengths), `chunk` rows per call.

  The last part is padded to `chunk` rows with copies of its last row, so fn is traced for
  one shape; each output (an array or a pytree of arrays with rows on axis 0) is trimmed back
  and the parts are concatenated, as numpy.
  """
  n = len(arrays[0])
  if n == 0:
    raise ValueError("map_chunks needs at least one row.")
  if any(len(a) != n for a in arrays):
    raise ValueError(f"map_chunks needs arrays of one length, got {[len(a) for a in arrays]}.")
  parts = []
  for start in range(0, n, chunk):
    rows = min(chunk, n - start)
    out = fn(*[pad_batch(np.asarray(a[start:start + chunk]), chunk) for a in arrays])
    parts.append(jax.tree.map(lambda x, rows=rows: np.asarray(x)[:rows], out))
  return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


def jit_batch_fn(fn: Callable[..., Any], mesh, donate_batch: bool = False):
  """jit of `fn(params, batch, key, indices)`: params and key replicated, batch, indices and
  every output sharded along the mesh's batch axis."""
  data, rep = batch_sharding(mesh), replicated(mesh)
  return jax.jit(fn, in_shardings=(rep, data, rep, data), out_shardings=data,
                 donate_argnums=(1,) if donate_batch else ())


class ShardedBatchFn:
  """`fn(params, batch, key, indices)` jitted with the batch axis over a mesh.

  Calls compile once per padded batch shape; the result is trimmed back to N rows and
  returned as host numpy arrays.
  """

  def __init__(self, fn: Callable[..., Any], mesh=None, donate_batch: bool = False):
    self.mesh = make_mesh() if mesh is None else mesh
    self._jitted = jit_batch_fn(fn, self.mesh, donate_batch)
    self.num_devices = self.mesh.devices.size

  def __call__(self, params, batch, key, indices=None):
    batch = np.asarray(batch)
    n = batch.shape[0]
    if indices is None:
      indices = np.arange(n, dtype=np.int32)
    indices = np.asarray(indices, np.int32)
    if indices.shape != (n,):
      raise ValueError(f"indices must have shape ({n},), got {indices.shape}.")
    batch = pad_batch(batch, self.num_devices)
    indices = pad_batch(indices, self.num_devices)
    data = batch_sharding(self.mesh)
    out = self._jitted(params, jax.device_put(batch, data), key, jax.device_put(indices, data))
    return jax.tree.map(lambda a: np.asarray(a)[:n], out)


def process_row_range(mesh, global_rows: int) -> tuple[int, int]:
  """Rows [start, stop) of a batch-sharded global array held by this process's devices."""
  devices = list(mesh.devices.flat)
  mine = [i for i, d in enumerate(devices) if d.process_index == jax.process_index()]
  if mine != list(range(mine[0], mine[-1] + 1)):
    raise ValueError("This process's devices are not contiguous in the mesh; build the mesh "
                     "from jax.devices() (sorted by process).")
  per_device = global_rows // len(devices)
  return mine[0] * per_device, (mine[-1] + 1) * per_device


def global_batch(mesh, local_rows: np.ndarray, global_rows: int) -> jax.Array:
  """Assembles a batch-sharded global array from each process's own rows."""
  return jax.make_array_from_process_local_data(
      batch_sharding(mesh), local_rows, (global_rows,) + local_rows.shape[1:])


def local_rows(array: jax.Array) -> np.ndarray:
  """This process's rows of a batch-sharded array, in order (no cross-host gather)."""
  shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
  seen, parts = set(), []
  for shard in shards:
    start = shard.index[0].start or 0
    if start not in seen:  # Replicated copies of one row range appear once.
      seen.add(start)
      parts.append(np.asarray(shard.data))
  return np.concatenate(parts, axis=0)
