"""The NCSN checkpoint converter: strict key/shape checks and clear errors."""

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from basis_jax.files import checkpoint_io
from basis_jax.priors import ncsn
from convert_weights import ncsn as convert_ncsn

torch = pytest.importorskip("torch")
from tests.reference import torch_ncsn  # noqa: E402  # pylint: disable=wrong-import-position

NGF = 2


@pytest.fixture(scope="module")
def published(tmp_path_factory):
  """A tiny model saved the way the reference saves: [state_dict, optimizer_state]."""
  path = str(tmp_path_factory.mktemp("ckpt") / "checkpoint.pth")
  torch_ncsn.make_checkpoint(path, 1, NGF)
  return path


def _state(path):
  return torch.load(path, weights_only=True)[0]


def _save_modified(tmp_path, published, edit, wrap=True):
  state = _state(published)
  edit(state)
  path = str(tmp_path / "edited.pth")
  torch.save([state, {}] if wrap else state, path)
  return path


def test_converts_all_173_tensors_and_loads_without_torch(published, tmp_path):
  out = str(tmp_path / "w.npz")
  config = convert_ncsn.convert(published, out, "mnist")
  assert config == ncsn.NCSNConfig.mnist(ngf=NGF)
  assert len(checkpoint_io.list_keys(out)) == 173
  meta = checkpoint_io.read_metadata(out)
  assert meta["architecture"] == ncsn.ARCHITECTURE and meta["config"]["ngf"] == NGF
  # The published ladder, so ncsn.load can refuse a schedule with other σ.
  np.testing.assert_allclose(meta["sigmas"], np.geomspace(1.0, 0.01, 10), rtol=1e-6)
  state = _state(published)
  _, _, params, _ = ncsn.load_weights(out)
  flat, _ = checkpoint_io.flatten(params)
  np.testing.assert_array_equal(np.asarray(flat["res2/0/conv2/conv/kernel"]),
                                state["module.res2.0.conv2.conv.weight"].numpy()
                                .transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(np.asarray(flat["refine4/output_convs/3_2_norm/embed/embedding"]),
                                state["module.refine4.output_convs.3_2_norm.embed.weight"].numpy())


def test_bare_state_dict_without_prefix(published, tmp_path):
  """A bare state dict converts as the DataParallel-wrapped checkpoint does: each of the 173
  tensors of either file is its source tensor (conv weights OIHW -> HWIO), none left over."""
  def strip(state):
    for key in list(state):
      state[key[len("module."):]] = state.pop(key)
  bare = _save_modified(tmp_path, published, strip, wrap=False)
  source = {key[len("module."):]: value.numpy() for key, value in _state(published).items()}
  # The mapping written out here, not taken from the converter: the leaf 'kernel' (a conv)
  # or 'embedding' (the CIN++ table) is PyTorch's 'weight', the module path is the same.
  torch_name = lambda path: re.sub(r"/(kernel|embedding)$", "/weight", path).replace("/", ".")
  for name, checkpoint in (("bare", bare), ("wrapped", published)):
    out = str(tmp_path / f"{name}.npz")
    convert_ncsn.convert(checkpoint, out, "mnist")
    flat, _ = checkpoint_io.flatten(ncsn.load_weights(out)[2])
    converted = {torch_name(path): np.asarray(value) for path, value in flat.items()}
    assert len(converted) == 173 and converted.keys() == source.keys(), name
    for key, value in source.items():
      expected = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
      np.testing.assert_array_equal(converted[key], expected, err_msg=f"{name}: {key}")


def test_missing_tensor(published, tmp_path):
  path = _save_modified(tmp_path, published,
                        lambda s: s.pop("module.res3.0.shortcut.weight"))
  with pytest.raises(ValueError, match=r"1 missing: res3\.0\.shortcut\.weight"):
    convert_ncsn.convert(path, str(tmp_path / "w.npz"), "mnist")


def test_unexpected_tensor(published, tmp_path):
  def add(state):
    state["module.refine1.msf.convs.0.weight"] = torch.zeros(4, 4, 3, 3)
  path = _save_modified(tmp_path, published, add)
  with pytest.raises(ValueError, match=r"1 unexpected: refine1\.msf\.convs\.0\.weight"):
    convert_ncsn.convert(path, str(tmp_path / "w.npz"), "mnist")


def test_wrong_shape(published, tmp_path):
  def reshape(state):
    state["module.res1.1.conv2.bias"] = torch.zeros(NGF + 1)
  path = _save_modified(tmp_path, published, reshape)
  with pytest.raises(ValueError, match=r"1 wrong shape: res1\.1\.conv2\.bias: file \(3,\), "
                                       r"model \(2,\)"):
    convert_ncsn.convert(path, str(tmp_path / "w.npz"), "mnist")


def test_truncated_file(published, tmp_path):
  path = str(tmp_path / "truncated.pth")
  with open(published, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[: len(data) // 2])
  with pytest.raises(ValueError, match="corrupt, truncated or not a PyTorch checkpoint"):
    convert_ncsn.convert(path, str(tmp_path / "w.npz"), "mnist")
  assert not os.path.exists(tmp_path / "w.npz")


def test_not_an_ncsn_checkpoint(tmp_path):
  path = str(tmp_path / "other.pth")
  torch.save({"fc.weight": torch.zeros(2, 2)}, path)
  with pytest.raises(ValueError, match="begin_conv.weight"):
    convert_ncsn.convert(path, str(tmp_path / "w.npz"), "mnist")


def test_cli_reports_error_without_traceback(tmp_path):
  path = tmp_path / "garbage.pth"
  path.write_bytes(b"not a checkpoint")
  repo = pathlib.Path(__file__).resolve().parents[1]
  result = subprocess.run(
      [sys.executable, "-m", "convert_weights.ncsn", f"--checkpoint={path}",
       f"--out={tmp_path / 'w.npz'}"], cwd=repo, capture_output=True, text=True,
      env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(repo)))
  assert result.returncode != 0
  assert "error: Cannot read" in result.stderr
  assert "Traceback" not in result.stderr
