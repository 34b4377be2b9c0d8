"""NCSN score network: parameter counts, layers and parity with the PyTorch reference."""

import dataclasses
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from basis_jax.files import checkpoint_io, data_formats

from basis_jax import errors

from basis_jax.sampling import schedules
from basis_jax.priors import ncsn
from basis_jax.priors import ncsn_layers
from configs import mnist_ncsn
from convert_weights import ncsn as convert_ncsn

sys.path.insert(0, os.path.dirname(__file__))

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
# Beside the shared data: <shared>/reference/ (see conftest.shared_data).
REFERENCE_TSV = "ncsn_{}_state_dict.tsv"
LEVELS = 10
TOLERANCE = 1e-5  # Relative L2 error, float32 on CPU, torch and jax on the same machine.
# The golden outputs were recorded by torch on another CPU; float32 summation order differs
# between CPUs (vector widths), which moved the MNIST level-0 error from 3.1e-6 (the
# recording machine) to 1.13e-5 on an AVX-512 Xeon (2026-12-06), others <= 4e-6.
GOLDEN_TOLERANCE = 3e-5
CONFIGS = {"mnist": ncsn.NCSNConfig.mnist, "cifar10": ncsn.NCSNConfig.cifar10}


def _section(dataset="mnist", **fields):
  """config.prior of configs/mnist_ncsn.py for `dataset`, with `fields` set."""
  section = mnist_ncsn.ncsn_prior(dataset)
  section.update(fields)
  return section


def rel_err(a, b):
  return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@pytest.mark.parametrize("dataset,expected", [("mnist", 7_638_657), ("cifar10", 30_117_635)])
def test_parameter_counts(dataset, expected):
  _, params = ncsn.abstract_params(CONFIGS[dataset]())
  assert ncsn.count_params(params) == expected
  assert len(jax.tree_util.tree_leaves(params)) == 173


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_keys_and_shapes_match_published_state_dict(dataset, shared_data):
  """The released checkpoint's key/shape list maps onto our parameters one to one."""
  path = shared_data.parent / "reference" / REFERENCE_TSV.format(dataset)
  if not path.exists():
    pytest.skip(f"{path} not available")
  state = {}
  with open(path) as f:
    for line in f:
      key, shape = line.rstrip("\n").split("\t")
      shape = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
      state[key[len("module."):]] = np.zeros(shape, np.float32)
  assert len(state) == 173
  config = convert_ncsn.infer_config(state, dataset)
  assert config == CONFIGS[dataset]()
  convert_ncsn.convert_state_dict(state, config)  # Raises on any mismatch.


def test_resize_align_corners_matches_definition():
  x = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
  out = np.asarray(ncsn_layers.resize_bilinear_align_corners(jnp.asarray(x), (5, 7)))
  # align_corners=True: corners map to corners, and with 3 -> 5 rows output row 1 sits
  # half-way between input rows 0 and 1 (half-pixel centres would give other weights).
  np.testing.assert_allclose(out[:, 0, 0], x[:, 0, 0], rtol=1e-6)
  np.testing.assert_allclose(out[:, -1, -1], x[:, -1, -1], rtol=1e-6)
  np.testing.assert_allclose(out[:, 1, 0], (x[:, 0, 0] + x[:, 1, 0]) / 2, rtol=1e-5)
  np.testing.assert_allclose(out[:, 2, 0], x[:, 1, 0], rtol=1e-6)
  same = ncsn_layers.resize_bilinear_align_corners(jnp.asarray(x), (3, 4))
  np.testing.assert_array_equal(np.asarray(same), x)


def test_avg_pool_counts_padding():
  x = jnp.ones((1, 6, 6, 1))
  out = np.asarray(ncsn_layers.avg_pool_5x5(x))[0, :, :, 0]
  assert out[0, 0] == pytest.approx(9 / 25)  # A corner sees 3×3 real pixels out of 25.
  assert out[3, 3] == pytest.approx(1.0)


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_conv_mean_pool_is_the_convolution_then_the_pool(kernel_size):
  """The stride-2 merged kernel (3×3) and pool-first (1×1) forms compute the reference's
  conv-then-mean-pool: same parameters, same values to float32 rounding (1e-6 relative)."""
  layer = ncsn_layers.ConvMeanPool(6, 10, kernel_size, dtype=None, rngs=nnx.Rngs(2))
  layer.conv.bias[...] = jnp.linspace(-1.0, 1.0, 10)  # A non-zero bias is carried too.
  x = jax.random.normal(jax.random.key(4), (3, 12, 8, 6))
  expected = ncsn_layers.mean_pool_2x2(layer.conv(x))
  out = layer(x)
  assert out.shape == (3, 6, 4, 10)
  np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6 * float(jnp.abs(expected).max()))
  with pytest.raises(ValueError, match="even height and width"):
    layer(jnp.zeros((1, 7, 8, 6)))


def _load_golden(dataset):
  path = os.path.join(FIXTURES, f"ncsn_golden_{dataset}.npz")
  with np.load(path) as data:
    state = {k[len("sd/module."):]: data[k] for k in data.files if k.startswith("sd/")}
    return state, data["x"], data["scores"]


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_parity_with_golden_fixture(dataset, tmp_path):
  """Reference outputs recorded with torch (tests/make_ncsn_fixtures.py), ngf=4."""
  state, x, scores = _load_golden(dataset)
  config = convert_ncsn.infer_config(state, dataset)
  params = convert_ncsn.convert_state_dict(state, config)
  path = str(tmp_path / "w.npz")
  checkpoint_io.save_params(path, params, {"architecture": ncsn.ARCHITECTURE,
                                           "config": config.to_dict()})
  prior = ncsn.load(_section(weights=path, dataset=dataset))
  score = jax.jit(prior.score_fn)
  errors = [rel_err(score(prior.params, x, jnp.int32(i)), scores[i]) for i in range(LEVELS)]
  print(f"golden {dataset} ngf={config.ngf}: " + " ".join(f"{e:.2e}" for e in errors))
  assert max(errors) <= GOLDEN_TOLERANCE, errors


def _torch_parity(dataset, ngf, tmp_path, batch=2):
  torch = pytest.importorskip("torch")
  from tests.reference import torch_ncsn  # pylint: disable=import-outside-toplevel
  channels = 1 if dataset == "mnist" else 3
  size = 28 if dataset == "mnist" else 32
  pth = str(tmp_path / "checkpoint.pth")
  model = torch_ncsn.make_checkpoint(pth, channels, ngf, LEVELS, seed=1)
  out = str(tmp_path / "converted.npz")
  convert_ncsn.convert(pth, out, dataset)
  prior = ncsn.load(_section(weights=out, dataset=dataset))
  score = jax.jit(prior.score_fn)
  x = np.random.default_rng(2).uniform(size=(batch, size, size, channels)).astype(np.float32)
  errors = []
  for level in range(LEVELS):
    with torch.no_grad():
      ref = model(torch.from_numpy(x.transpose(0, 3, 1, 2)),
                  torch.full((batch,), level, dtype=torch.long)).numpy().transpose(0, 2, 3, 1)
    errors.append(rel_err(score(prior.params, x, jnp.int32(level)), ref))
  print(f"torch {dataset} ngf={ngf}: " + " ".join(f"{e:.2e}" for e in errors))
  return errors


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_parity_with_torch_reduced(dataset, tmp_path):
  """A fresh torch model through the .pth converter (ngf=4 shares the golden test's compile)."""
  errors = _torch_parity(dataset, 4, tmp_path)
  assert max(errors) <= TOLERANCE, errors


@pytest.mark.slow
@pytest.mark.parametrize("dataset,ngf", [("mnist", 64), ("cifar10", 128)])
def test_parity_with_torch_full_size(dataset, ngf, tmp_path):
  errors = _torch_parity(dataset, ngf, tmp_path, batch=4)
  assert max(errors) <= TOLERANCE, errors


def test_bfloat16_compute_stays_close_to_the_reference():
  state, x, scores = _load_golden("mnist")
  config = convert_ncsn.infer_config(state, "mnist")
  params = convert_ncsn.convert_state_dict(state, config)
  graphdef, _ = ncsn.abstract_params(dataclasses.replace(config, dtype="bfloat16"))
  out = jax.jit(ncsn.make_score_fn(graphdef))(params, x, jnp.int32(9))
  assert out.dtype == jnp.float32
  # bf16 keeps ~3 significant digits through ~60 layers (4 channels wide here).
  assert rel_err(out, scores[9]) < 0.3


def test_prior_interface_random_init():
  cfg = _section(weights=None, ngf=4, seed=3)
  with pytest.raises(errors.ConfigError, match="has no weights") as refused:
    ncsn.load(cfg)  # Random weights only on request.
  assert "allow_random_weights=True" in refused.value.hint
  cfg.allow_random_weights = True
  prior = ncsn.load(cfg)
  assert prior.image_shape == (28, 28, 1) and prior.num_levels == LEVELS
  assert ncsn.count_params(prior.params) == 42_777
  x = jax.ShapeDtypeStruct((3, 28, 28, 1), jnp.float32)
  out = jax.eval_shape(prior.score_fn, prior.params, x, jnp.int32(4))  # Scalar level -> [B].
  assert out.shape == (3, 28, 28, 1) and out.dtype == jnp.float32


def test_wrong_input_shape_is_a_clear_error():
  model = nnx.eval_shape(lambda: ncsn.build(ncsn.NCSNConfig.mnist(ngf=2)))
  with pytest.raises(ValueError, match="Expected x of shape"):
    model(jnp.zeros((1, 32, 32, 1)), jnp.zeros((1,), jnp.int32))


def test_load_rejects_mismatched_architecture(tmp_path):
  config = ncsn.NCSNConfig.mnist(ngf=2)
  _, abstract = ncsn.abstract_params(config)
  params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract)
  path = str(tmp_path / "w.npz")
  checkpoint_io.save_params(path, params, {"architecture": ncsn.ARCHITECTURE,
                                           "config": config.to_dict()})
  with pytest.raises(ValueError, match="channels=3"):
    ncsn.load(_section(weights=path, dataset="cifar10"))


def test_load_refuses_a_ladder_other_than_the_files_and_records_its_digest(tmp_path):
  """Level i queried at a σ it was not trained for would give a wrong score silently."""
  config = ncsn.NCSNConfig.mnist(ngf=2)
  _, abstract = ncsn.abstract_params(config)
  params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract)
  path = str(tmp_path / "w.npz")
  trained = schedules.geometric_sigmas(1.0, 0.01, LEVELS)
  checkpoint_io.save_params(path, params, {"architecture": ncsn.ARCHITECTURE,
                                           "config": config.to_dict(), "sigmas": list(trained)})
  prior_config = _section(weights=path)
  same = schedules.Schedule(trained, steps_per_level=1, step_lr=1e-5)
  prior = ncsn.load(prior_config, same)
  assert prior.weights_digest == data_formats.file_digest(path)
  other = schedules.Schedule(schedules.geometric_sigmas(1.0, 0.005, LEVELS), 1, 1e-5)
  with pytest.raises(errors.ConfigError, match=r"trained for σ = \(1, .*0\.01\), but the "
                     r"schedule uses σ = \(1, .*0\.005\)"):
    ncsn.load(prior_config, other)
  assert ncsn.load(_section(weights=None, ngf=2, allow_random_weights=True),
                   other).weights_digest is None


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(FIXTURES) if f.endswith(".npz")))
def test_every_golden_file_records_its_provenance(name):
  """Which script and library versions wrote each fixture (a golden value without them
  cannot be reproduced or trusted after an upgrade)."""
  import json  # pylint: disable=import-outside-toplevel
  with np.load(os.path.join(FIXTURES, name)) as f:
    assert "provenance" in f.files, name
    record = json.loads(str(f["provenance"]))
  assert os.path.exists(os.path.join(os.path.dirname(__file__), "..", record["generator"]))
  assert record.get("torch"), record
