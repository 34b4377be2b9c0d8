"""`python tests/separate_killed_after.py N FLAGS...`: experiments.separate with FLAGS, except
that the process SIGKILLs itself once its N-th chunk is recorded.

The fault is injected through `separation.run`'s `on_chunk_recorded` seam, so the kill
happens at a known point (not by timing) and the production loop holds no test hook.
"""

import functools
import os
import runpy
import signal
import sys

from basis_jax.sampling import separation


def _kill_after(chunks: int, number: int) -> None:
  if number == chunks:
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
  after = int(sys.argv.pop(1))
  separation.run = functools.partial(separation.run,
                                     on_chunk_recorded=functools.partial(_kill_after, after))
  sys.argv[0] = "experiments/separate.py"
  runpy.run_module("experiments.separate", run_name="__main__", alter_sys=True)
