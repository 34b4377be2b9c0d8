"""The library stands alone: importing every basis_jax module loads neither torch nor the
tooling (benchmarks/, the tests' reference ports)."""

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]

_IMPORT_ALL = """
import importlib, pkgutil, sys
import basis_jax
for module in pkgutil.walk_packages(basis_jax.__path__, "basis_jax."):
  importlib.import_module(module.name)
print(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "benchmarks", "tests"}))
"""


def test_library_imports_no_torch_and_no_tooling():
  # A fresh interpreter: this test process has torch and the test helpers loaded already.
  result = subprocess.run([sys.executable, "-c", _IMPORT_ALL], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=True,
                          env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
  assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
