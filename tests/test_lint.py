"""`ruff check` (rules in ruff.toml) finds nothing in the code: unused imports and names,
undefined names, lines over 100 characters."""

import importlib.util
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
CHECKED = ("basis_jax", "experiments", "studies", "configs", "convert_weights", "benchmarks",
           "tests")


def test_ruff_finds_nothing():
  if importlib.util.find_spec("ruff") is None:
    pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
  result = subprocess.run(
      [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format=concise",
       *CHECKED], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, f"ruff check found:\n{result.stdout}{result.stderr}"
