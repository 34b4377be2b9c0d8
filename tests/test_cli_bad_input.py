"""Bad input as a new user types it: one `error:` line, exit 2, no workdir; Ctrl-C is one line.

Each case runs the real CLI in a subprocess with a timeout, so a hang fails the test.
"""

import os
import signal
import subprocess
import sys

import pytest

from tests.test_cli import REPO, TOY, _assert_user_error, _run


@pytest.mark.parametrize("override, message", [
    ("--config.batch_size=0", "batch_size must be at least 1, got 0."),
    ("--config.num_mixtures=0", "num_mixtures must be at least 1, got 0."),
    ("--config.num_mixtures=-3", "num_mixtures must be at least 1, got -3."),
])
def test_sizes_below_one_are_refused_before_anything_is_written(tmp_path, override, message):
  work = tmp_path / "run"
  result = _run([*TOY, f"--workdir={work}", override], timeout=120)
  assert _assert_user_error(result) == f"error: {message}"
  assert not work.exists()


def test_workdir_under_a_file(tmp_path):
  (tmp_path / "file").write_text("")
  result = _run([*TOY, f"--workdir={tmp_path / 'file' / 'run'}"], timeout=120)
  _assert_user_error(result, "cannot create workdir", "is a file")


def test_missing_weights_leave_no_workdir(tmp_path):
  work = tmp_path / "run"
  result = _run(["-m", "experiments.separate", "--config=configs/mnist_ncsn.py",
                 f"--workdir={work}"], timeout=200)
  _assert_user_error(result)
  assert not work.exists()


def test_a_bad_data_path_leaves_no_workdir(tmp_path):
  work = tmp_path / "run"
  result = _run(["-m", "experiments.separate", "--config=configs/mnist_unet.py",
                 f"--config.data.path={tmp_path / 'nowhere'}", "--config.num_mixtures=2",
                 f"--workdir={work}"], timeout=200)
  _assert_user_error(result, "nowhere")
  assert not work.exists()


def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1", PYTHONPATH=str(REPO))
  process = subprocess.Popen(
      [sys.executable, *TOY, f"--workdir={tmp_path}", "--config.num_mixtures=100000",
       "--config.batch_size=1"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
  lines = []
  try:
    for line in process.stderr:
      lines.append(line)
      if "Chunk 1/" in line:
        process.send_signal(signal.SIGINT)
        break
    rest = process.communicate(timeout=300)[1]  # Generous: it once ran past 120 s on a loaded machine.
  finally:
    if process.poll() is None:
      process.kill()
  assert process.returncode == 130, "".join(lines) + rest
  assert "Traceback" not in rest, rest
  last = rest.strip().splitlines()[-1]
  assert last.startswith("interrupted after chunk "), last
  assert last.endswith("/100000; re-run the same command to resume"), last


def test_cifar10_path_hints(tmp_path):
  import numpy as np  # pylint: disable=import-outside-toplevel
  from basis_jax import data, errors  # pylint: disable=import-outside-toplevel
  np.savez(tmp_path / "cifar.npz", images=np.zeros((2, 32, 32, 3), np.uint8))
  with pytest.raises(errors.InputFileError) as folder:
    data.load_cifar10_files(str(tmp_path), "test")
  assert folder.value.hint.endswith(f"--config.data.path={tmp_path / 'cifar.npz'}")
  with pytest.raises(errors.InputFileError) as keys:
    data.load_cifar10_files(str(tmp_path / "cifar.npz"), "test")
  assert "holds ['images']; expected x_test and y_test" in str(keys.value)
  assert keys.value.hint.startswith("save it as np.savez(path, x_test=")
