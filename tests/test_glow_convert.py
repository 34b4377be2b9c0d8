"""Glow converter: parity with a PyTorch Glow in the y0ast/Glow-PyTorch layout, and errors."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")

from basis_jax.files import checkpoint_io  # noqa: E402
from basis_jax.priors import glow  # noqa: E402
from convert_weights import glow as convert_glow  # noqa: E402
from tests.reference import torch_glow  # noqa: E402


def randomized_torch_glow(seed=0, **kwargs):
  torch.manual_seed(seed)
  model = torch_glow.TorchGlow(**kwargs)
  with torch.no_grad():
    for name, p in model.named_parameters():
      # Off the zero init, and small enough to keep the flow well conditioned.
      p.add_(0.05 * torch.randn_like(p))
  return model.eval()


def save_state(model, path):
  torch.save(model.state_dict(), path)
  return path


@pytest.mark.parametrize("affine,lu,learn_top", [(True, False, True), (False, True, False)])
def test_parity_with_pytorch(tmp_path, affine, lu, learn_top):
  kwargs = dict(image_shape=(8, 8, 3), width=16, depth=2, levels=2, affine=affine, lu=lu,
                learn_top=learn_top)
  model = randomized_torch_glow(**kwargs)
  config, graphdef, state = convert_glow.convert_torch(save_state(model, tmp_path / "g.pth"))
  assert config == glow.GlowConfig(image_shape=(8, 8, 3), levels=2, depth=2, width=16,
                                   coupling="affine" if affine else "additive",
                                   lu_decomposed=lu, learn_top=learn_top, edge_padding=False)
  x = np.random.default_rng(0).uniform(-0.5, 0.5, (4, 8, 8, 3)).astype(np.float32)
  with torch.no_grad():
    zs_ref, logp_ref = model(torch.from_numpy(x.transpose(0, 3, 1, 2)))

  @jax.jit
  def encode(state, x):
    zs, logdet, logp = nnx.merge(graphdef, state).encode(x)
    return zs, logdet + logp

  zs, logp = encode(state, jnp.asarray(x))
  np.testing.assert_allclose(logp, logp_ref.numpy(), rtol=1e-4)
  latent_errors = []
  for z, z_ref in zip(zs, zs_ref):
    z_ref = z_ref.numpy().transpose(0, 2, 3, 1)
    latent_errors.append(np.max(np.abs(z - z_ref)) / max(1.0, np.max(np.abs(z_ref))))
    assert latent_errors[-1] <= 1e-4
  # docs/glow.md quotes these numbers (pytest -s -n 0 tests/test_glow_convert.py -k parity).
  print(f"glow parity affine={affine} lu={lu} learn_top={learn_top}: log p max rel error "
        f"{np.max(np.abs(logp - logp_ref.numpy()) / np.abs(logp_ref.numpy())):.2g}, "
        f"latents {max(latent_errors):.2g}")


def test_converted_file_round_trip(tmp_path):
  model = randomized_torch_glow(image_shape=(8, 8, 1), width=8, depth=1, levels=2)
  config, graphdef, state = convert_glow.convert_torch(save_state(model, tmp_path / "g.pth"))
  out = tmp_path / "glow.npz"
  convert_glow.save(str(out), config, state, "test")
  loaded = glow.load_weights(str(out))
  assert loaded.config == config
  np.testing.assert_array_equal(
      checkpoint_io.flatten(loaded.state)[0]["top_prior/kernel"],
      checkpoint_io.flatten(state)[0]["top_prior/kernel"])


def _state_dict():
  model = randomized_torch_glow(image_shape=(8, 8, 1), width=8, depth=1, levels=2)
  return {k: v.clone() for k, v in model.state_dict().items()}


def test_missing_tensor(tmp_path):
  sd = _state_dict()
  del sd["flow.layers.1.block.2.actnorm.logs"]
  torch.save(sd, tmp_path / "g.pth")
  with pytest.raises(checkpoint_io.CheckpointError,
                     match=r"1 missing: flow\.layers\.1\.block\.2\.actnorm\.logs"):
    convert_glow.convert_torch(str(tmp_path / "g.pth"))


def test_extra_tensor(tmp_path):
  sd = _state_dict()
  sd["flow.layers.1.block.9.conv.weight"] = torch.zeros(3)
  torch.save(sd, tmp_path / "g.pth")
  with pytest.raises(checkpoint_io.CheckpointError,
                     match=r"1 unexpected: flow\.layers\.1\.block\.9\.conv\.weight"):
    convert_glow.convert_torch(str(tmp_path / "g.pth"))


def test_wrong_shape(tmp_path):
  sd = _state_dict()
  sd["flow.layers.1.block.2.conv.weight"] = torch.zeros(8, 8, 3, 3)
  torch.save(sd, tmp_path / "g.pth")
  with pytest.raises(checkpoint_io.CheckpointError,
                     match=r"wrong shape: flow\.layers\.1\.block\.2\.conv\.weight: "
                           r"file \(8, 8, 3, 3\), model \(8, 8, 1, 1\)"):
    convert_glow.convert_torch(str(tmp_path / "g.pth"))


def test_truncated_file(tmp_path):
  path = save_state(randomized_torch_glow(image_shape=(8, 8, 1), width=8, depth=1, levels=2),
                    tmp_path / "g.pth")
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(ValueError, match="corrupt, truncated or not a PyTorch checkpoint"):
    convert_glow.convert_torch(str(path))


def test_not_a_glow_state_dict(tmp_path):
  torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "x.pth")
  with pytest.raises(ValueError, match="no 'prior_h'"):
    convert_glow.convert_torch(str(tmp_path / "x.pth"))


def test_tensorflow_checkpoints_need_tensorflow(tmp_path):
  try:
    import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    pytest.skip("TensorFlow is installed; the message is for machines without it.")
  except ImportError:
    pass
  with pytest.raises(RuntimeError, match="needs TensorFlow, which is not installed"):
    convert_glow.read_tf_checkpoint(os.fspath(tmp_path / "model.ckpt"))


def test_tf_mapping_covers_every_parameter():
  config = glow.GlowConfig(image_shape=(8, 8, 3), levels=2, depth=2, width=8)
  table = convert_glow.tf_mapping(config)
  flat, _ = checkpoint_io.flatten(nnx.state(glow.Glow(config)))
  assert set(table) == set(flat)
  assert table["levels/1/steps/0/coupling_net/conv_out/kernel"].source_key == \
      "model/1/0/f1/l_last/W"
  assert table["levels/0/split_prior/logs"].source_key == "model/pool0/conv/logs"
  # tfops.actnorm("actnorm") opens the scopes actnorm_center and actnorm_scale.
  assert table["levels/0/steps/1/actnorm/bias"].source_key == "model/0/1/actnorm_center/b"
  assert table["levels/0/steps/1/coupling_net/conv1/actnorm/logs"].source_key == \
      "model/0/1/f1/l_1/actnorm_scale/logs"
