"""How much device memory a compiled program needs (the separator's fit check uses it)."""

from __future__ import annotations


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
