"""The project weights format: round trip, strict checks, corrupt files."""

import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from basis_jax.files import checkpoint_io


def _tree():
  model = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.Linear(3, 1, rngs=nnx.Rngs(1)))
  _, params = nnx.split(model, nnx.Param)
  opt_state = optax.adam(1e-3).init(params)
  return {"params": params, "opt_state": opt_state}


def test_round_trip_of_nnx_state_and_optax_state(tmp_path):
  tree = _tree()
  path = str(tmp_path / "w.npz")
  checkpoint_io.save_params(path, tree, {"architecture": "toy", "step": 7})
  abstract = jax.eval_shape(lambda: tree)
  loaded, meta = checkpoint_io.load_params(path, abstract)
  assert meta == {"format_version": 1, "architecture": "toy", "step": 7}
  jax.tree.map(np.testing.assert_array_equal, loaded, tree)
  flat, _ = checkpoint_io.flatten(tree)
  assert "params/layers/0/kernel" in flat


def test_mismatches_are_listed_by_name(tmp_path):
  path = str(tmp_path / "w.npz")
  checkpoint_io.save_params(path, {"a": jnp.zeros(2), "b": jnp.zeros(3), "extra": jnp.zeros(1)})
  target = {"a": jax.ShapeDtypeStruct((2,), jnp.float32),
            "b": jax.ShapeDtypeStruct((4,), jnp.float32),
            "c": jax.ShapeDtypeStruct((1,), jnp.float32)}
  with pytest.raises(checkpoint_io.CheckpointError) as info:
    checkpoint_io.load_params(path, target)
  message = str(info.value)
  assert path in message
  assert "1 missing: c" in message and "1 unexpected: extra" in message
  assert "1 wrong shape: b: file (3,), model (4,)" in message


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_unreadable_files(tmp_path, damage):
  path = tmp_path / "w.npz"
  checkpoint_io.save_params(str(path), {"a": jnp.arange(1000.0)})
  if damage == "truncate":
    path.write_bytes(path.read_bytes()[:-200])
  elif damage == "garbage":
    path.write_bytes(b"\x00" * 100)
  else:
    path.unlink()
  with pytest.raises(checkpoint_io.CheckpointError, match="w.npz"):
    checkpoint_io.load_params(str(path), {"a": jax.ShapeDtypeStruct((1000,), jnp.float32)})


def test_export_keeps_the_named_groups_and_the_metadata(tmp_path):
  """`experiments.export_weights`' core: params kept bit for bit, optimizer moments dropped."""
  tree = _tree()
  src, dst = str(tmp_path / "state.npz"), str(tmp_path / "shipped.npz")
  checkpoint_io.save_params(src, tree, {"architecture": "toy", "step": 7})
  meta = checkpoint_io.copy_groups(src, dst, ["params"])
  assert meta == {"architecture": "toy", "step": 7}
  assert checkpoint_io.read_metadata(dst) == {"format_version": 1, **meta}
  assert checkpoint_io.list_groups(src) == set(tree) and checkpoint_io.list_groups(dst) == {
      "params"}
  loaded, _ = checkpoint_io.load_params(dst, jax.eval_shape(lambda: {"params": tree["params"]}))
  jax.tree.map(np.testing.assert_array_equal, loaded["params"], tree["params"])
  with pytest.raises(checkpoint_io.CheckpointError, match="has no ema group"):
    checkpoint_io.copy_groups(src, dst, ["params", "ema"])


def test_compressed_files_are_deflated_reproducible_and_read_back_exactly(tmp_path):
  state = {"params": {"w": np.zeros((64, 64), np.float32),
                      "b": np.random.default_rng(0).normal(size=(100,)).astype(np.float32)}}
  stored, deflated, again = (str(tmp_path / n) for n in ("s.npz", "d.npz", "d2.npz"))
  checkpoint_io.save_params(stored, state, {"step": 1})
  checkpoint_io.save_params(deflated, state, {"step": 1}, compress=True)
  checkpoint_io.save_params(again, state, {"step": 1}, compress=True)
  assert os.path.getsize(deflated) < os.path.getsize(stored) / 4  # The zeros deflate.
  assert open(deflated, "rb").read() == open(again, "rb").read()
  with zipfile.ZipFile(deflated) as archive:
    assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}
  loaded, _ = checkpoint_io.load_params(deflated, state)
  np.testing.assert_array_equal(loaded["params"]["b"], state["params"]["b"])
  assert checkpoint_io.read_metadata(deflated)["step"] == 1


def test_float16_storage_halves_the_file_and_loads_back_as_float32(tmp_path):
  rng = np.random.default_rng(0)
  state = {"w": rng.normal(size=(64, 64)).astype(np.float32),
           "count": np.arange(3, dtype=np.int32)}
  checkpoint_io.save_params(str(tmp_path / "f32.npz"), state, {"architecture": "x"})
  checkpoint_io.save_params(str(tmp_path / "f16.npz"), state, {"architecture": "x"},
                            float16=True)
  assert os.path.getsize(tmp_path / "f16.npz") < 0.55 * os.path.getsize(tmp_path / "f32.npz")
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)
  loaded, meta = checkpoint_io.load_params(str(tmp_path / "f16.npz"), abstract)
  assert meta["stored_dtype"] == "float16"
  assert loaded["w"].dtype == np.float32 and loaded["count"].dtype == np.int32
  np.testing.assert_array_equal(loaded["count"], state["count"])
  # float16 keeps 11 significant bits: relative rounding ≤ 2^-11.
  np.testing.assert_allclose(loaded["w"], state["w"], rtol=2.0**-11, atol=1e-7)
  assert not np.array_equal(loaded["w"], state["w"])
