"""FID Inception: parity with pytorch-fid, resize/pool semantics, weight conversion."""

import os

import numpy as np
import pytest

import inception_fixture
from basis_jax import errors
from basis_jax.evaluation import inception
from convert_weights import inception as converter

TESTDATA = os.path.join(os.path.dirname(__file__), 'fixtures')


def _relative_error(actual, expected):
  """Largest deviation relative to the output's scale (max |expected|)."""
  return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.fixture(name='model', scope='module')
def _model():
  params = converter.convert_state_dict(inception_fixture.random_torch_state_dict())
  return inception.from_params(params)


@pytest.fixture(name='jax_outputs', scope='module')
def _jax_outputs(model):
  # Resizing first gives one input shape, so the network compiles once; resizing
  # 299 -> 299 again inside is exact (identity weights).
  resized = np.concatenate([np.asarray(inception.resize_bilinear(b))
                            for b in inception_fixture.golden_inputs()])
  return inception.FeatureExtractor(model, batch_size=len(resized))(resized)


def test_matches_pytorch_fid_golden_outputs(jax_outputs):
  # Golden outputs: pytorch-fid 0.3.0 (torch 2.14.1) on the same random weights and inputs.
  golden = np.load(os.path.join(TESTDATA, inception_fixture.GOLDEN))
  assert jax_outputs['pool'].shape == (5, 2048)
  assert jax_outputs['logits'].shape == (5, 1008)
  pool = _relative_error(jax_outputs['pool'], golden['pool'])
  logits = _relative_error(jax_outputs['logits'], golden['logits'])
  print(f'inception vs pytorch-fid golden: pool {pool:.1e}, logits {logits:.1e}')  # docs quote it
  assert pool <= 1e-4 and logits <= 1e-4, (pool, logits)


def test_matches_pytorch_fid_live(jax_outputs):
  pytest.importorskip('pytorch_fid')
  import make_inception_golden  # pylint: disable=g-import-not-at-top
  pool, logits = make_inception_golden.torch_fid_outputs(
      inception_fixture.random_torch_state_dict(), inception_fixture.golden_inputs())
  assert _relative_error(jax_outputs['pool'], pool) <= 1e-4
  assert _relative_error(jax_outputs['logits'], logits) <= 1e-4


def test_resize_and_pool_match_torch():
  torch = pytest.importorskip('torch')
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for h, w in ((32, 32), (28, 28), (331, 317)):
    x = rng.random((1, h, w, 3), dtype=np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(x.transpose(0, 3, 1, 2)), size=(299, 299), mode='bilinear',
        align_corners=False).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(inception.resize_bilinear(jnp.asarray(x)), expected,
                               atol=2e-6)
  x = rng.normal(size=(2, 9, 7, 4)).astype(np.float32)
  expected = torch.nn.functional.avg_pool2d(
      torch.from_numpy(x.transpose(0, 3, 1, 2)), 3, stride=1, padding=1,
      count_include_pad=False).numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(inception.avg_pool_3x3_exclude_pad(jnp.asarray(x)), expected,
                             atol=1e-6)


def test_parameter_count():
  shapes = inception.param_shapes()
  assert len(shapes) == 472  # 94 conv+bn layers x 5 arrays, plus the fc layer
  assert sum(int(np.prod(s)) for s in shapes.values()) == 23_885_392


def test_converter_rejects_other_state_dicts():
  state = inception_fixture.random_torch_state_dict()
  state['AuxLogits.fc.weight'] = np.zeros((1000, 768), np.float32)
  with pytest.raises(ValueError, match='unexpected.*AuxLogits'):
    converter.convert_state_dict(state)
  state.pop('AuxLogits.fc.weight')
  state['fc.weight'] = np.zeros((1000, 2048), np.float32)
  with pytest.raises(ValueError, match='fc.weight'):
    converter.convert_state_dict(state)


def test_converter_reads_pth(tmp_path):
  torch = pytest.importorskip('torch')
  state = inception_fixture.random_torch_state_dict()
  path = str(tmp_path / 'weights.pth')
  torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
  with pytest.raises(errors.InputFileError, match='does not start with 6726825d'):
    converter.convert_file(path)  # Checked whatever the file's name.
  params = converter.convert_file(path, verify=False)  # A test network.
  np.testing.assert_array_equal(params['fc.kernel'], state['fc.weight'].T)
  np.testing.assert_array_equal(params['Conv2d_1a_3x3.conv.kernel'],
                                state['Conv2d_1a_3x3.conv.weight'].transpose(2, 3, 1, 0))
  with pytest.raises(errors.InputFileError, match='converted .npz') as refused:
    inception.load(path)  # The library reads converted weights only (no import circle).
  assert 'python -m convert_weights.inception --input' in refused.value.hint
  os.rename(path, str(tmp_path / inception.TORCH_WEIGHTS_NAME))  # wrong bytes, real name
  with pytest.raises(ValueError, match='6726825d'):
    converter.convert_file(str(tmp_path / inception.TORCH_WEIGHTS_NAME))


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
  monkeypatch.setenv(inception.WEIGHTS_ENV, str(tmp_path / 'nope.npz'))
  with pytest.raises(FileNotFoundError, match='(?s)pt_inception-2015-12-05-6726825d.pth.*'
                     'convert_weights.inception'):
    inception.load()


def test_converted_weights_must_record_the_published_source_digest(tmp_path):
  params = {k: np.zeros(v, np.float32) for k, v in inception.param_shapes().items()}
  path = tmp_path / 'renamed.npz'
  np.savez(path, **params)  # No source digest (another network, or an old converter).
  with pytest.raises(errors.InputFileError, match='source digest starting with 6726825d'):
    inception.load(str(path))
  np.savez(path, **params, **{inception.SOURCE_DIGEST_KEY: np.asarray('6726825d' + '0' * 56)})
  assert isinstance(inception.load(str(path)), inception.InceptionV3FID)


def test_extractor_refuses_nan_and_out_of_range_input():
  extract = inception.FeatureExtractor(inception._abstract_model())  # pylint: disable=protected-access
  images = np.full((2, 8, 8, 3), 0.5, np.float32)
  images[0, 0, 0, 0] = np.nan
  with pytest.raises(ValueError, match='1 Inception input values are NaN'):
    extract(images)
  with pytest.raises(ValueError, match=r'in \[0, 1\], got values in \[0.5, 255\]'):
    extract(np.concatenate([np.full((1, 8, 8, 3), 255.0), np.full((1, 8, 8, 3), 0.5)]))
