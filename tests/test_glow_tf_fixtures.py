"""openai/glow TF checkpoints -> the Flax Glow, against the original code's own outputs.

tests/fixtures/glow_tf/ (README.md there) holds checkpoints written by openai/glow's model.py
under TensorFlow, the tensors of each as .npz, and what the original computed on fixed
images and dequantisation noise. Every conversion goes through `convert_tf` twice: reading
the real checkpoint (needs TensorFlow; skipped without it) and reading the .npz (always).
"""

import dataclasses
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from basis_jax.files import checkpoint_io

from basis_jax import errors

from basis_jax.sampling import schedules
from basis_jax.priors import glow
from configs import mnist_glow
from convert_weights import glow as convert_glow

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "glow_tf"
# name: the architecture the original was built with (its hps), as a GlowConfig.
CONFIGS = {
    "affine_learntop": glow.GlowConfig(image_shape=(8, 8, 3), levels=2, depth=2, width=8),
    "additive_notop": glow.GlowConfig(image_shape=(8, 8, 3), levels=2, depth=2, width=8,
                                      coupling="additive", learn_top=False),
    "affine_3levels_32": glow.GlowConfig(image_shape=(32, 32, 3), levels=3, depth=1, width=8,
                                         learn_top=False),
}
TOLERANCE = 1e-4
BASIS_FOLDERS = {1.0: "logs1point0", 0.59948425: "logs0point599", 0.35938137: "logs0point359",
                 0.21544347: "logs0point215", 0.12915497: "logs0point129",
                 0.07742637: "logs0point077", 0.04641589: "logs0point046",
                 0.02782559: "logs0point027", 0.01668101: "logs0point016",
                 0.01: "logs0point01"}  # basis-separation glow/sep.py's `checkpoints`.


HAS_TF = importlib.util.find_spec("tensorflow") is not None
needs_tf = pytest.mark.skipif(not HAS_TF, reason="TensorFlow is not installed (pip install "
                              "-e '.[tf]'); the .npz path covers the same mapping.")


def ckpt(name):
  return str(FIXTURES / name / "model.ckpt")


def read_npz(path):
  """The committed tensors of the checkpoint at `path` (a stand-in for TensorFlow)."""
  with np.load(pathlib.Path(path).parent / "tensors.npz") as data:
    return {k: data[k] for k in data.files}


def reference(name):
  with np.load(FIXTURES / name / "reference.npz") as data:
    return {k: data[k] for k in data.files}


@jax.jit
def _outputs(graphdef, state, x):
  model = nnx.merge(graphdef, state)
  zs, logdet, logp = model.encode(x)
  return zs, logdet + logp


def max_rel_errors(config, graphdef, state, ref, prefix=""):
  """Max relative errors (log-likelihood, bits/dim, latents) against the original's."""
  x = ref["images"].astype(np.float32) / 256.0 - 0.5 + ref["noise"]
  zs, log_density = _outputs(graphdef, state, jnp.asarray(x))
  objective = np.asarray(log_density) - config.num_dims * config.n_bits * np.log(2.0)
  bits = np.asarray(glow.log_prob_to_bits_per_dim(log_density, config))

  def rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))

  errors_ = {"log-likelihood": rel(objective, ref[prefix + "objective"]),
             "log-density": rel(log_density, ref[prefix + "log_density"]),
             "bits/dim": rel(bits, ref[prefix + "bits_per_dim"])}
  if not prefix:
    names = [f"z_{i}" for i in range(config.levels - 1)] + ["z_top"]
    errors_["latents"] = max(rel(z, ref[n]) for z, n in zip(zs, names))
  return errors_


def _check(name, read, learn_top=True, prefix=""):
  config, graphdef, state = convert_glow.convert_tf(ckpt(name), CONFIGS[name].image_shape[0],
                                                    learn_top=learn_top, read=read)
  assert config == dataclasses.replace(CONFIGS[name], learn_top=learn_top and
                                       CONFIGS[name].learn_top)
  errors_ = max_rel_errors(config, graphdef, state, reference(name), prefix)
  # docs/glow.md quotes these (pytest -s -n 0 tests/test_glow_tf_fixtures.py -k parity).
  print(f"TF parity {name} learn_top={learn_top} via "
        f"{'TensorFlow' if read is convert_glow.read_tf_checkpoint else 'npz'}: " +
        ", ".join(f"{k} {v:.2g}" for k, v in errors_.items()))
  assert max(errors_.values()) <= TOLERANCE, errors_


@pytest.mark.parametrize("name", CONFIGS)
def test_parity_via_npz(name):
  _check(name, read_npz)


@needs_tf
@pytest.mark.parametrize("name", CONFIGS)
def test_parity_via_tensorflow(name):
  _check(name, convert_glow.read_tf_checkpoint)


@pytest.mark.parametrize("read", [read_npz, pytest.param("tf", marks=needs_tf)])
def test_parity_without_the_learned_top(read):
  """BASIS's separation restores its learned-top checkpoints into a graph without one."""
  read = convert_glow.read_tf_checkpoint if read == "tf" else read
  _check("affine_learntop", read, learn_top=False, prefix="nolearntop_")


def test_real_checkpoint_tensors_are_filtered():
  """The original's own saver also writes Polyak averages and Adamax moments: only the
  model's variables are used, and every one of them."""
  tensors = read_npz(ckpt("additive_notop"))
  assert any(k.endswith("/ExponentialMovingAverage") for k in tensors)
  assert any(k.startswith("Variable") for k in tensors)
  kept = convert_glow.tf_model_tensors(tensors)
  table = convert_glow.tf_mapping(CONFIGS["additive_notop"])
  assert set(kept) == {rule.source_key for rule in table.values()}


def test_unsupported_and_mismatched_checkpoints():
  tensors = read_npz(ckpt("affine_learntop"))
  shuffled = {**tensors, "model/0/0/shuffle/indices": np.arange(12)}
  with pytest.raises(errors.InputFileError, match="'shuffle' permutation"):
    convert_glow.convert_tf_tensors(shuffled, 8)
  reversed_ = {k: v for k, v in tensors.items() if "invconv" not in k}
  with pytest.raises(errors.InputFileError, match="'reverse' permutation"):
    convert_glow.convert_tf_tensors(reversed_, 8)
  missing = {k: v for k, v in tensors.items() if k != "model/1/1/f1/l_2/actnorm_scale/logs"}
  with pytest.raises(checkpoint_io.CheckpointError,
                     match=r"1 missing: model/1/1/f1/l_2/actnorm_scale/logs"):
    convert_glow.convert_tf_tensors(missing, 8)
  with pytest.raises(ValueError, match="divisible by 2\\*\\*levels"):
    convert_glow.convert_tf_tensors(tensors, 6)


# -- the ladder ---------------------------------------------------------------------------


def _ladder_tree(root, labels, fixture="additive_notop"):
  """A BASIS tree: one folder per label holding a copy of the fixture checkpoint."""
  for label in labels:
    folder = root / label
    folder.mkdir(parents=True)
    for suffix in (".index", ".data-00000-of-00001"):
      shutil.copy(ckpt(fixture) + suffix, folder / (convert_glow.BASIS_CHECKPOINT + suffix))
  return root


def _read_per_sigma(path):
  """The fixture's tensors, shifted by the σ of the folder, so each level differs."""
  sigma = convert_glow.ladder_entry(path).sigma
  return {k: v + np.float32(sigma) if k.endswith("l_last/b") else v
          for k, v in read_npz(ckpt("additive_notop")).items()}


def test_basis_ladder_to_one_stacked_file(tmp_path):
  sigmas = schedules.geometric_sigmas(1.0, 0.01, 10)
  tree = _ladder_tree(tmp_path / "finetuned" / "mnist", BASIS_FOLDERS.values())
  entries = convert_glow.find_basis_ladder(str(tree))
  assert [e.label for e in entries] == list(BASIS_FOLDERS.values())
  config, _, state = convert_glow.convert_tf_ladder(entries, sigmas, 8, read=_read_per_sigma)
  out = str(tmp_path / "glow_sigmas.npz")
  convert_glow.save(out, config, state, "test", sigmas)
  loaded = glow.load_weights(out)
  assert loaded.sigmas == sigmas and loaded.config == CONFIGS["additive_notop"]
  bias = checkpoint_io.flatten(loaded.state)[0]["levels/0/steps/0/coupling_net/conv_out/bias"]
  base = read_npz(ckpt("additive_notop"))["model/0/0/f1/l_last/b"].reshape(-1)
  shifts = np.asarray(bias)[:, 0] - base[0]
  np.testing.assert_allclose(shifts, [e.sigma for e in entries], atol=1e-6)
  prior = mnist_glow.glow_prior(image_shape=(8, 8, 3), levels=2, depth=2, width=8, weights=out)
  prior.update({"coupling": "additive", "learn_top": False})
  loaded_prior = glow.load(prior, schedules.Schedule(sigmas, 1, 1e-5))
  assert loaded_prior.num_levels == 10


@pytest.mark.parametrize("labels,message", [
    (list(BASIS_FOLDERS.values())[:-1], "σ = 0.01 has no checkpoint"),
    (list(BASIS_FOLDERS.values()) + ["logs0point0"], "not on the ladder: logs0point0 (σ = 0)"),
])
def test_ladder_refuses_missing_and_extra_sigma(tmp_path, labels, message):
  tree = _ladder_tree(tmp_path, labels)
  entries = convert_glow.find_basis_ladder(str(tree))
  with pytest.raises(errors.InputFileError, match=re.escape(message)):
    convert_glow.convert_tf_ladder(entries, schedules.geometric_sigmas(1.0, 0.01, 10), 8,
                                   read=_read_per_sigma)


def test_ladder_refuses_a_misordered_list(tmp_path):
  sigmas = schedules.geometric_sigmas(1.0, 0.01, 3)  # 1, 0.1, 0.01.
  folders = {1.0: "logs1point0", 0.1: "logs0point1", 0.01: "logs0point01"}
  for label in folders.values():
    (tmp_path / label).mkdir()
  paths = [str(tmp_path / folders[s] / convert_glow.BASIS_CHECKPOINT) for s in (1.0, 0.01, 0.1)]
  entries = [convert_glow.ladder_entry(p) for p in paths]
  with pytest.raises(errors.InputFileError, match="mis-ordered: checkpoint 2 is logs0point01, "
                     "but level 2 of the ladder is σ = 0.1"):
    convert_glow.match_ladder(entries, sigmas, ordered=True)
  assert convert_glow.match_ladder(entries, sigmas) == [entries[0], entries[2], entries[1]]


# -- the command line ----------------------------------------------------------------------


def _run(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1", PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, "-m", "convert_weights.glow", *args], cwd=REPO,
                        capture_output=True, text=True, env=env, timeout=300)


def test_cli_flags_in_docs_parse():
  """Every --flag the module docstring and docs/glow.md's "Converting weights" name exists
  (absl negates a bool as --noNAME)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  flag_values = flags.FlagValues()
  convert_glow.define_flags(flag_values)
  docs = (REPO / "docs" / "glow.md").read_text().split("## Converting weights")[1]
  docs = docs.split("\n## ")[0]
  named = set(re.findall(r"--(\w+)", convert_glow.__doc__ + docs))
  assert named
  known = set(flag_values) | {f"no{name}" for name in flag_values
                              if isinstance(flag_values[name], flags.BooleanFlag)}
  assert named <= known, sorted(named - known)


@needs_tf
def test_cli_converts_a_fixture(tmp_path):
  out = tmp_path / "glow.npz"
  result = _run(f"--tf_checkpoint={ckpt('affine_learntop')}", "--image_size=8", f"--out={out}")
  assert result.returncode == 0, result.stderr[-3000:]
  loaded = glow.load_weights(str(out))
  assert loaded.config == CONFIGS["affine_learntop"] and loaded.sigmas is None
  assert max(max_rel_errors(loaded.config, loaded.graphdef, loaded.state,
                            reference("affine_learntop")).values()) <= TOLERANCE


@needs_tf
def test_cli_converts_a_ladder(tmp_path):
  tree = _ladder_tree(tmp_path / "tree", ["logs1point0", "logs0point01"])
  out = tmp_path / "glow_sigmas.npz"
  result = _run(f"--tf_ladder={tree}", "--image_size=8", "--sigma_max=1", "--sigma_min=0.01",
                "--num_levels=2", f"--out={out}")
  assert result.returncode == 0, result.stderr[-3000:]
  loaded = glow.load_weights(str(out))
  assert loaded.sigmas == schedules.geometric_sigmas(1.0, 0.01, 2)
  assert loaded.metadata["source"].startswith("BASIS TF ladder")


def test_cli_refuses_a_ladder_with_a_missing_sigma(tmp_path):
  """Checked before any checkpoint is read, so also without TensorFlow."""
  tree = _ladder_tree(tmp_path, ["logs1point0", "logs0point599"])
  result = _run(f"--tf_ladder={tmp_path}", f"--out={tmp_path / 'g.npz'}")
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(error) == 1 and "σ = 0.359381 has no checkpoint" in error[0], result.stderr
  assert tree.exists()


@pytest.mark.skipif(HAS_TF, reason="TensorFlow is installed; the message is for machines "
                    "without it.")
def test_cli_without_tensorflow_says_so(tmp_path):
  result = _run(f"--tf_checkpoint={ckpt('affine_learntop')}", "--image_size=8",
                f"--out={tmp_path / 'g.npz'}")
  assert result.returncode == 2
  assert "needs TensorFlow, which is not installed" in result.stderr
