"""`python tests/cli_cases.py < cases.json`: runs many command lines of the real programs in
one interpreter, each in a forked child, and prints their results as JSON.

Each case is {"argv": ["-m", "experiments.separate", ...], "timeout": s}; its result is
{"returncode", "stdout", "stderr"}. The parent imports the library once (the 1-3 s every
fresh `python -m` spends) but starts no JAX backend and no thread, so every child is a
clean program run: `runpy` executes the module as `__main__` with the case's argv, as
`python -m` would.
"""

import json
import os
import runpy
import signal
import sys
import tempfile
import threading
import time

from basis_jax.evaluation import report  # noqa: F401  # pylint: disable=unused-import

from basis_jax.sampling import separation  # noqa: F401  # pylint: disable=unused-import


def run_case(argv: list[str], timeout: float) -> dict:
  assert argv[0] == "-m", "cases name a module: ['-m', 'experiments.separate', ...]"
  with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
    pid = os.fork()
    if pid == 0:  # The child: the program, with its own stdout and stderr.
      os.dup2(out.fileno(), 1)
      os.dup2(err.fileno(), 2)
      sys.argv = [argv[1].replace(".", "/") + ".py", *argv[2:]]
      code = 0
      try:
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
      except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
      except BaseException:  # pylint: disable=broad-except  # As the interpreter would.
        import traceback  # pylint: disable=import-outside-toplevel
        traceback.print_exc()
        code = 1
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(code)  # pylint: disable=protected-access
    deadline = time.time() + timeout
    while True:
      done, status = os.waitpid(pid, os.WNOHANG)
      if done:
        break
      if time.time() > deadline:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        status = -1
        break
      time.sleep(0.02)
    returncode = os.waitstatus_to_exitcode(status) if status != -1 else "timeout"
    out.seek(0)
    err.seek(0)
    return {"returncode": returncode, "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace")}


if __name__ == "__main__":
  assert threading.active_count() == 1, "fork needs a single-threaded parent"
  cases = json.load(sys.stdin)
  json.dump([run_case(c["argv"], c.get("timeout", 120)) for c in cases], sys.stdout)
