"""The command-line programs as a user meets them, run in subprocesses.

A user error ends in `error: ...` (and maybe `hint: ...`) with exit status 2 and no
traceback; `--traceback` brings it back; bugs keep theirs; the console holds no
third-party INFO lines; random weights need asking for; evaluation reads a config.
"""

import gzip
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from basis_jax.files import workdir
from configs import gaussian_toy

REPO = pathlib.Path(__file__).resolve().parents[1]
TOY = ["-m", "experiments.separate", "--config=configs/gaussian_toy.py"]
# NCSN at width 4 on random weights, allowed on purpose.
TINY_NCSN = ["-m", "experiments.separate", "--config=configs/mnist_ncsn.py",
             "--config.prior.ngf=4", "--config.prior.allow_random_weights=True"]


def _run(args, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1",
             PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                        env=env, timeout=timeout)


def _assert_user_error(result, *fragments):
  """Exit 2; the last line is the error (or a hint right after it); no traceback."""
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  lines = result.stderr.rstrip("\n").splitlines()
  if lines[-1].startswith("hint: "):
    lines = lines[:-1]
  assert lines[-1].startswith("error: "), lines[-3:]
  for fragment in fragments:
    assert fragment in lines[-1], (fragment, lines[-1])
  return lines[-1]


def test_unknown_config_key_names_the_keys_closest_first(tmp_path):
  result = _run([*TOY, f"--workdir={tmp_path}", "--config.bogus=1"])
  line = _assert_user_error(result, "config has no field 'bogus'", "valid keys of config: ")
  assert "schedule" in line and "num_mixtures" in line
  result = _run([*TOY, f"--workdir={tmp_path}", "--config.schedule.stp_lr=1"])
  line = _assert_user_error(result, "config.schedule has no field 'stp_lr'")
  assert line.split("valid keys of config.schedule: ")[1].startswith("step_lr, ")
  assert result.stderr.rstrip().splitlines()[-1] == "hint: did you mean --config.schedule.step_lr?"
  result = _run([*TINY_NCSN, f"--workdir={tmp_path}", "--config.prior.bogs=1"])
  _assert_user_error(result, "config.prior has no field 'bogs'", "valid keys of config.prior:")


def test_bad_values_and_their_traceback_on_request(tmp_path):
  result = _run([*TOY, f"--workdir={tmp_path / 'a'}", "--config.schedule.step_lr=-1"])
  _assert_user_error(result, "step_lr (δ) must be positive, got -1.0")
  assert not (tmp_path / "a" / "separations.npz").exists()
  result = _run([*TOY, f"--workdir={tmp_path / 'a'}", "--config.schedule.step_lr=-1",
                 "--traceback"])
  assert result.returncode == 1 and "Traceback" in result.stderr
  assert "ConfigError: step_lr (δ) must be positive" in result.stderr
  result = _run([*TOY, f"--workdir={tmp_path}", "--config.num_mixtures=many"])
  _assert_user_error(result, "--config.num_mixtures=many")


def test_refused_resume(tmp_path):
  # The toy config's own config.json with another seed, and one finished chunk.
  saved = workdir._config_dict(gaussian_toy.get_config())
  saved["seed"] += 1
  (tmp_path / "config.json").write_text(json.dumps(saved))
  (tmp_path / "index.json").write_text(json.dumps({"chunks": [{"range": [0, 1]}]}))
  result = _run([*TOY, f"--workdir={tmp_path}"])
  _assert_user_error(result, "holds results of a different config", "seed")
  assert "--allow_config_change" in result.stderr.splitlines()[-1]  # The hint.


def test_missing_weights_and_random_weights_refusal(tmp_path):
  result = _run(["-m", "experiments.separate", "--config=configs/mnist_ncsn.py",
                 f"--workdir={tmp_path}", "--config.prior.weights=/nonexistent.npz"])
  _assert_user_error(result, "Weights file not found: /nonexistent.npz")
  result = _run(["-m", "experiments.separate", "--config=configs/mnist_ncsn.py",
                 f"--workdir={tmp_path}"])
  _assert_user_error(result, "The NCSN prior has no weights")
  hint = result.stderr.splitlines()[-1]
  for way in ("convert_weights.ncsn", "experiments.train", "allow_random_weights=True"):
    assert way in hint
  assert not (tmp_path / "separations.npz").exists()


def test_bad_data_and_mixture_files(tmp_path):
  # The toy priors build instantly; with a real data source the mixtures come from files.
  mnist_data = [*TOY, "--config.data.source=mnist"]
  result = _run([*mnist_data, f"--workdir={tmp_path / 'w1'}", "--config.data.path=/nonexistent"])
  _assert_user_error(result, "config.data.path /nonexistent does not exist")

  mnist = tmp_path / "mnist"
  mnist.mkdir()
  for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    with gzip.open(mnist / name, "wb") as f:
      f.write(b"\x00\x00\x08\x01\x00\x00\x00\x00")
  result = _run([*mnist_data, f"--workdir={tmp_path / 'w2'}", f"--config.data.path={mnist}"])
  _assert_user_error(result, "Checksum mismatch for", "t10k-images-idx3-ubyte.gz")

  garbage = tmp_path / "garbage.png"
  garbage.write_bytes(b"not an image")
  images = [*mnist_data, "--config.mixture.kind=images"]
  result = _run([*images, f"--workdir={tmp_path / 'w3'}", f"--config.mixture.files={garbage}"])
  _assert_user_error(result, f"Cannot read image {garbage}")

  small = tmp_path / "small.png"
  Image.fromarray(np.zeros((10, 12), np.uint8)).save(small)
  result = _run([*images, f"--workdir={tmp_path / 'w4'}", f"--config.mixture.files={small}"])
  _assert_user_error(result, "is 12x10 (width x height), but the prior separates 16x16")
  assert not any((tmp_path / w / "separations.npz").exists() for w in ("w1", "w2", "w3", "w4"))


def test_a_bug_keeps_its_traceback(tmp_path):
  script = tmp_path / "prog.py"
  script.write_text(
      "from absl import flags\n"
      "from basis_jax import cli, errors\n"
      "MODE = flags.DEFINE_string('mode', 'bug', '')\n"
      "def main(argv):\n"
      "  if MODE.value == 'user':\n"
      "    raise errors.InputFileError('two\\nlines', hint='fix it')\n"
      "  raise KeyError('a bug')\n"
      "cli.run(main)\n")
  bug = _run([str(script), "--mode=bug"])
  assert bug.returncode == 1 and "Traceback" in bug.stderr and "KeyError: 'a bug'" in bug.stderr
  user = _run([str(script), "--mode=user"])
  assert user.returncode == 2 and user.stderr.splitlines()[-3:] == [
      "error: two", "  lines", "hint: fix it"]


def test_training_console_shows_progress_not_orbax(tmp_path, shared_data):
  workdir = tmp_path / "train"
  result = _run(["-m", "experiments.train", "--config=configs/train_ncsn_mnist.py",
                 f"--config.data.path={shared_data / 'mnist'}", "--config.data.num_examples=64",
                 "--config.model.ngf=4", "--config.training.batch_size=8",
                 "--config.num_steps=2", "--config.checkpoint_every=2", "--config.log_every=1",
                 "--config.sampling.every=0", f"--workdir={workdir}"])
  assert result.returncode == 0, result.stderr[-3000:]
  console = result.stdout + result.stderr
  assert "step 2/2  loss" in console and "ETA" in console
  assert "orbax" not in console.lower() and "checkpoint_manager" not in console
  assert "| Name" not in console  # The parameter table is for the log file.
  log = (workdir / "train.log").read_text()
  assert "step 2/2  loss" in log and "CheckpointManager" in log and "| Name" in log
  assert (workdir / "weights.npz").exists()


@pytest.fixture(scope="module")
def random_weights_run(tmp_path_factory):
  """A two-mixture MNIST run on random NCSN weights, allowed on purpose."""
  data = pathlib.Path(os.environ.get("BASIS_SHARED_DATA", REPO.parent / "shared" / "data"))
  if not data.is_dir():
    pytest.skip(f"shared data not found at {data}")
  workdir = tmp_path_factory.mktemp("random_weights")
  result = _run([*TINY_NCSN, f"--workdir={workdir}", f"--config.data.path={data / 'mnist'}",
                 "--config.num_mixtures=2", "--config.batch_size=2",
                 "--config.schedule.steps_per_level=1"])
  return workdir, result


def test_random_weights_run_when_allowed(random_weights_run):
  workdir, result = random_weights_run
  assert result.returncode == 0, result.stderr[-3000:]
  assert "random initialisation" in result.stderr  # Still a warning on the console.
  with np.load(workdir / "separations.npz") as out:
    assert out["components"].shape == (2, 2, 28, 28, 1)


def test_evaluation_from_the_config(random_weights_run, tmp_path):
  workdir, _ = random_weights_run
  result = _run(["-m", "experiments.evaluate", "--config=configs/evaluate.py",
                 f"--workdir={workdir}", "--config.inception=never",
                 "--config.histogram_bins=7"])
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads((workdir / "eval.json").read_text())
  assert report["n_mixtures"] == 2 and len(report["histogram"]["counts"]) == 7
  assert "ssim" not in report
  result = _run(["-m", "experiments.evaluate", f"--workdir={workdir}",
                 "--config.inception=never", "--config.ssim=True"])  # Default --config.
  assert result.returncode == 0, result.stderr[-3000:]
  assert "mean" in json.loads((workdir / "eval.json").read_text())["ssim"]
  result = _run(["-m", "experiments.evaluate", f"--workdir={tmp_path}"])
  _assert_user_error(result, f"{tmp_path}/separations.npz not found")
  result = _run(["-m", "experiments.evaluate", "--config.inception=sometimes",
                 f"--workdir={workdir}"])
  _assert_user_error(result, "inception='sometimes'")


@pytest.mark.parametrize("env_update, expected", [
    ({}, len(os.sched_getaffinity(0))),
    ({"JAX_NUM_CPU_DEVICES": "1"}, 1),
    ({"XLA_FLAGS": "--xla_force_host_platform_device_count=3"}, 3),
])
def test_sampler_programs_use_one_cpu_device_per_core_unless_told(tmp_path, env_update, expected):
  """`experiments.separate` shards over one CPU device per core; the user's count wins."""
  env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
  env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), **env_update)
  result = subprocess.run([sys.executable, *TOY, f"--workdir={tmp_path}"], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"to run on {expected} device(s)" in result.stderr, result.stderr[-3000:]
