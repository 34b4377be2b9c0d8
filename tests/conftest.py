"""Test setup: CPU only, 8 fake devices for the sharding tests, shared data discovery."""

import os
import pathlib

# Must happen before JAX initialises its backends.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def shared_data_dir() -> pathlib.Path:
  """../shared/data beside the checkout (override with BASIS_SHARED_DATA)."""
  return pathlib.Path(os.environ.get("BASIS_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data():
  path = shared_data_dir()
  if not path.is_dir():
    pytest.skip(f"shared data not found at {path}")
  return path
