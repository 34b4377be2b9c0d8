"""Benchmark the compiled sampler against the reference loop structure, in one run.

  python -m experiments.benchmark --config=configs/benchmark_ncsn.py:mnist --workdir=DIR

Logs each long phase as it starts and each row as one line when it is measured; rewrites
DIR/benchmark.json and DIR/benchmark.md after every row (a stopped run keeps the rows it
measured, marked incomplete) and prints the markdown tables at the end.
"""

import functools
import os


from basis_jax import cli
from benchmarks import ncsn_sampler, report

_CONFIG, _WORKDIR, _ = cli.define_run_flags("Benchmark config file.",
                                           "Where the tables are written.")


def main(argv):
  del argv
  os.makedirs(_WORKDIR.value, exist_ok=True)
  try:
    results = ncsn_sampler.run(
        _CONFIG.value, on_row=functools.partial(report.save, workdir=_WORKDIR.value))
  except KeyboardInterrupt as e:  # cli.run prints this one line.
    raise KeyboardInterrupt("interrupted; the rows measured so far are in "
                            f"{os.path.join(_WORKDIR.value, 'benchmark.md')}") from e
  print(report.markdown(results))


if __name__ == "__main__":
  cli.run(main, log_name="benchmark.log", cpu_device_per_core=True)
