"""How much device memory a compiled program needs, and the separator's check that a chunk fits."""

from __future__ import annotations

from basis_jax.errors import ConfigError


def peak_memory_bytes(compiled) -> tuple[int | None, str]:
  """Device memory the compiled program needs: XLA's per-program analysis (arguments,
  outputs and temporaries, less aliased buffers), and where the figure comes from.

  The allocator's `peak_bytes_in_use` is not used: it is a process-wide high-water mark that
  earlier, larger runs would set. (None, 'n/a') where the backend gives no analysis.
  """
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None, "n/a"
  return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes +
             analysis.temp_size_in_bytes - analysis.alias_size_in_bytes), "XLA analysis"


class ChunkMemoryError(ConfigError, MemoryError):
  """A chunk whose compiled program would not fit in device memory: lower batch_size."""


def check_chunk_fits(compiled, batch_rows: int, cap_gb: float) -> None:
  """Refuses a chunk whose compiled program needs more device memory than allowed
  (`cap_gb`; 0: the device's own limit), naming a batch size that would fit."""
  needed, _ = peak_memory_bytes(compiled)
  if needed is None:
    return
  if not cap_gb:
    import jax  # pylint: disable=import-outside-toplevel
    limit = (jax.local_devices()[0].memory_stats() or {}).get("bytes_limit")
    if not limit:
      return
    cap_gb = limit / 2**30
  needed /= 2**30
  if needed > cap_gb:
    # The compiled program is per device and scales with the rows each device holds.
    fits = max(1, int(batch_rows * cap_gb / needed))
    raise ChunkMemoryError(
        f"A chunk of {batch_rows} mixtures needs about {needed:.2f} GiB of device memory per "
        f"device, over the cap of {cap_gb:.2f} GiB. Set batch_size to at most about {fits} "
        "(global), or raise max_device_memory_gb.")
