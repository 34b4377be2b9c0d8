"""Benchmark the compiled sampler against the reference loop structure, in one run.

  python -m experiments.benchmark --config=configs/benchmark_ncsn.py:mnist --workdir=DIR

Prints markdown tables and writes DIR/benchmark.json and DIR/benchmark.md.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from basis_jax import atomic, cli
from benchmarks import ncsn_sampler

_CONFIG = config_flags.DEFINE_config_file("config", None, "Benchmark config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the tables are written.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  results = ncsn_sampler.run(_CONFIG.value)
  report = ncsn_sampler.report(results)
  print(report)
  os.makedirs(_WORKDIR.value, exist_ok=True)
  atomic.write_json(os.path.join(_WORKDIR.value, "benchmark.json"), results)
  with atomic.atomic_open(os.path.join(_WORKDIR.value, "benchmark.md"), "w") as f:
    f.write(report + "\n")


if __name__ == "__main__":
  cli.run(main, log_name="benchmark.log", cpu_device_per_core=True)
