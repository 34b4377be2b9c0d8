"""Long separation runs: outputs, resume after SIGKILL, atomic chunks, config refusal,
multi-process runs and the device-memory cap."""

import dataclasses
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import types

import numpy as np
import pytest
from ml_collections import config_dict

from basis_jax.files import atomic, workdir

from basis_jax import cli, errors, priors as priors_lib

from basis_jax.evaluation import metrics

from basis_jax.sampling import mixing, run_config, separation
from basis_jax.priors import gaussian, glow
from configs import gaussian_toy

REPO = pathlib.Path(__file__).resolve().parents[1]


def _toy_config(**overrides):
  config = gaussian_toy.get_config()
  config.schedule.num_levels = 3
  config.schedule.steps_per_level = 10
  config.num_mixtures = 12
  config.batch_size = 5
  for key, value in overrides.items():
    target = config
    *path, last = key.split(".")
    for part in path:
      target = target[part]
    target[last] = value
  return config


def test_outputs_follow_the_contract(tmp_path):
  summary = separation.run(_toy_config(), str(tmp_path))
  with np.load(tmp_path / "separations.npz") as out:
    assert out["mixtures"].shape == (12, 16, 16, 1)
    assert out["components"].shape == (12, 2, 16, 16, 1)
    assert out["ground_truth"].shape == (12, 2, 16, 16, 1)
    np.testing.assert_allclose(out["ground_truth"].sum(1), out["mixtures"], atol=1e-6)
    assert out["score_norm"].shape == (12, 3)
  for name in ("config.json", "metrics.json", "separations.png", "index.json"):
    assert (tmp_path / name).exists(), name
  assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3  # 12 = 5 + 5 + 2.
  assert summary["num_mixtures"] == 12
  assert json.loads((tmp_path / "config.json").read_text())["schedule"]["steps_per_level"] == 10


def test_a_stop_asked_for_during_a_chunk_stops_once_it_is_saved(tmp_path, monkeypatch):
  # What the first Ctrl-C does (cli sets the flag and logs the note); here it comes while
  # chunk 1 is being recorded, and the loop stops before chunk 2.
  monkeypatch.setattr(cli, "_INTERRUPT", threading.Event())
  asked = lambda number: cli._INTERRUPT.set()  # pylint: disable=protected-access
  with pytest.raises(KeyboardInterrupt, match=r"^interrupted after chunk 1/3: 5/12 mixtures "
                     "are saved; re-run the same command to resume$"):
    separation.run(_toy_config(), str(tmp_path), on_chunk_recorded=asked)
  assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
  monkeypatch.setattr(cli, "_INTERRUPT", threading.Event())
  assert separation.run(_toy_config(), str(tmp_path))["num_mixtures"] == 12  # Resumes.


def test_changed_config_is_refused_naming_the_keys(tmp_path):
  separation.run(_toy_config(), str(tmp_path))
  changed = _toy_config(**{"schedule.step_lr": 1e-5, "seed": 3})
  with pytest.raises(ValueError, match="schedule.step_lr, seed"):
    separation.run(changed, str(tmp_path))
  # Keys that do not change results may differ: a new batch size resumes (nothing to do).
  separation.run(_toy_config(batch_size=4), str(tmp_path))
  # The explicit override mixes results on purpose.
  separation.run(changed, str(tmp_path), allow_config_change=True)


def test_a_change_of_mixtures_is_refused_even_with_the_override(tmp_path):
  """Old components beside new mixtures/ground truth would be scored against the wrong truth."""
  separation.run(_toy_config(num_mixtures=5), str(tmp_path))
  before = (tmp_path / "separations.npz").read_bytes()
  for key, value in (("mixture.seed", 3), ("mixing.alphas", (1.0, 0.5))):
    with pytest.raises(errors.ConfigError, match=f"which mixtures exist: {key}"):
      separation.run(_toy_config(num_mixtures=5, **{key: value}), str(tmp_path),
                     allow_config_change=True)
  assert (tmp_path / "separations.npz").read_bytes() == before
  assert json.loads((tmp_path / "config.json").read_text())["mixture"]["seed"] == 0


def test_resume_with_other_prior_weights_under_the_same_path_is_refused(tmp_path):
  """The digest of each prior's weights file is part of config.json."""
  separation.run(_toy_config(num_mixtures=2), str(tmp_path))
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved[workdir.WEIGHTS_KEY] == [None, None]  # Analytic priors have no file.
  work = workdir.Workdir(str(tmp_path / "w"))
  config = _toy_config()
  work.check_config(config, False, ["aa" * 32, None])
  work.check_config(config, False, ["aa" * 32, None])  # Same weights: resumes.
  # A finished chunk computed with those weights (no chunk: nothing to mix, not refused).
  (tmp_path / "w" / "index.json").write_text(json.dumps({"chunks": [{"range": [0, 1]}]}))
  with pytest.raises(errors.ConfigError, match="prior_weights_sha256.*aaaa.*bbbb"):
    work.check_config(config, False, ["bb" * 32, None])
  work.check_config(config, True, ["bb" * 32, None])  # Mixing weights on purpose.


def test_device_memory_cap_names_a_batch_size_that_fits(tmp_path):
  with pytest.raises(MemoryError, match="Set batch_size to at most about"):
    separation.run(_toy_config(max_device_memory_gb=1e-6), str(tmp_path))


def _separate_cmd(workdir, *overrides):
  return [sys.executable, "-m", "experiments.separate", "--config=configs/gaussian_toy.py",
          f"--workdir={workdir}", *overrides]


def _env(devices=1):
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices),
             PYTHONPATH=str(REPO))
  return env


RUN_FLAGS = ("--config.num_mixtures=40", "--config.batch_size=4",
             "--config.schedule.num_levels=4", "--config.schedule.steps_per_level=20")


def test_sigkill_then_resume_is_byte_identical(tmp_path):
  reference, killed = tmp_path / "reference", tmp_path / "killed"
  subprocess.run(_separate_cmd(reference, *RUN_FLAGS), cwd=REPO, env=_env(), check=True,
                 capture_output=True)
  # The run SIGKILLs itself right after its 3rd of 10 chunks is recorded: no timing involved.
  killed_cmd = [sys.executable, str(REPO / "tests" / "separate_killed_after.py"), "3",
                *_separate_cmd(killed, *RUN_FLAGS)[3:]]
  proc = subprocess.run(killed_cmd, cwd=REPO, env=_env(), capture_output=True)
  assert proc.returncode == -signal.SIGKILL
  index = killed / "index.json"
  assert len(json.loads(index.read_text())["chunks"]) == 3
  assert not (killed / "separations.npz").exists()
  for chunk in (killed / "chunks").glob("chunk_*.npz"):  # Every visible chunk is complete.
    with np.load(chunk) as data:
      assert data["components"].shape[1:] == (2, 16, 16, 1)
  result = subprocess.run(_separate_cmd(killed, *RUN_FLAGS), cwd=REPO, env=_env(), check=True,
                          capture_output=True, text=True)
  assert f"{3 * 4} already done" in result.stderr
  assert not list(killed.rglob("*.tmp"))
  assert ((killed / "separations.npz").read_bytes() ==
          (reference / "separations.npz").read_bytes())


def test_a_write_killed_midway_leaves_no_partial_file(tmp_path):
  target = tmp_path / "chunk.npz"
  atomic.save_npz(str(target), x=np.arange(3))
  before = target.read_bytes()
  writer = subprocess.Popen([sys.executable, "-c", (
      "import sys, time\n"
      "from basis_jax.files import atomic\n"
      "with atomic.atomic_open(sys.argv[1], 'wb') as f:\n"
      "  f.write(b'x' * 1000000)\n"
      "  print('writing', flush=True)\n"
      "  time.sleep(60)\n"), str(target)], cwd=REPO, env=_env(), stdout=subprocess.PIPE)
  assert writer.stdout.readline().strip() == b"writing"
  writer.send_signal(signal.SIGKILL)
  writer.wait()
  assert target.read_bytes() == before  # The old complete file, not a partial new one.
  leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
  assert leftovers, "the killed writer's temporary file stays beside, never in place"


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_give_the_single_process_result(tmp_path):
  flags = ("--config.num_mixtures=10", "--config.batch_size=6",
           "--config.schedule.num_levels=3", "--config.schedule.steps_per_level=10")
  port = _free_port()
  procs = [subprocess.Popen(
      _separate_cmd(tmp_path / "multi", *flags, "--config.distributed.enabled=True",
                    f"--config.distributed.coordinator_address=localhost:{port}",
                    "--config.distributed.num_processes=2",
                    f"--config.distributed.process_id={i}"),
      cwd=REPO, env=_env(devices=2), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
           for i in range(2)]
  for proc in procs:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    # The progress callback takes a scalar: no rows gathered onto one device every level.
    assert b"Involuntary full rematerialization" not in err, err.decode()[-3000:]
  # Each process wrote only its own rows of each chunk.
  parts = sorted(p.name for p in (tmp_path / "multi" / "chunks").iterdir())
  assert parts == ["chunk_00000000_00000006.p000.npz", "chunk_00000000_00000006.p001.npz",
                   "chunk_00000006_00000010.p000.npz", "chunk_00000006_00000010.p001.npz"]
  subprocess.run(_separate_cmd(tmp_path / "single", *flags), cwd=REPO, env=_env(), check=True,
                 capture_output=True)
  with np.load(tmp_path / "multi" / "separations.npz") as multi, \
       np.load(tmp_path / "single" / "separations.npz") as single:
    np.testing.assert_allclose(multi["components"], single["components"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(multi["mixtures"], single["mixtures"])


def _padded(prior, data_shape):
  """`prior` working on `data_shape` images padded and tiled to its own (Glow's glow32)."""
  return dataclasses.replace(prior, data_space=glow.PaddedSpace(data_shape, prior.image_shape))


@pytest.mark.parametrize("op", [mixing.Sum((0.5, 0.5)), mixing.Sum((1.0, 2.0, 0.5)),
                                mixing.Generic(mixing.clipped_sum, num_components=2)])
def test_mixtures_map_into_a_prior_space_consistently(op):
  """m' computed from m equals g applied to the mapped components (Glow's padded MNIST)."""
  toy = gaussian.make_prior(np.full((8, 8, 3), 0.5), np.full((8, 8, 3), 0.1), (1.0, 0.1))
  prior = _padded(toy, (6, 6, 1))
  job = types.SimpleNamespace(priors=[prior], mixing=op)
  k = op.num_components
  x = np.random.default_rng(0).uniform(size=(k, 6, 6, 1)).astype(np.float32)
  m = np.asarray(op(x))[None]
  mapped = separation.mixtures_to_prior_space(m, job)
  np.testing.assert_allclose(mapped[0], op(prior.to_prior(x)), atol=1e-6)
  np.testing.assert_allclose(prior.from_prior(prior.to_prior(x)), x, atol=1e-6)
  job.mixing = mixing.Grayscale()
  with pytest.raises(ValueError, match="acts pixel by pixel"):
    separation.mixtures_to_prior_space(m[..., :0], job)


def test_a_padded_prior_writes_and_scores_dataset_space(tmp_path, monkeypatch):
  """separations.npz is in the dataset's shape; the border the prior adds is never scored."""
  real_load = priors_lib.load

  def load(spec, schedule):
    prior = _padded(real_load(spec, schedule), (14, 14, 1))
    mean = np.asarray(prior.params["means"])[1:15, 1:15, :1]
    return dataclasses.replace(prior, sample=lambda num, seed: (
        mean + 0.1 * np.random.default_rng(seed).standard_normal((num, 14, 14, 1))
    ).astype(np.float32))

  monkeypatch.setattr(priors_lib, "load", load)
  summary = separation.run(_toy_config(num_mixtures=4, batch_size=4), str(tmp_path))
  with np.load(tmp_path / "separations.npz") as out:
    assert out["mixtures"].shape == (4, 14, 14, 1)
    assert out["components"].shape == out["ground_truth"].shape == (4, 2, 14, 14, 1)
    expected = metrics.separation_psnr(out["components"], out["ground_truth"])["mixture"]
  assert summary["psnr"]["mean"] == pytest.approx(expected.mean(), rel=1e-6)


def test_data_mixtures_are_made_by_the_runs_mixing_operator(shared_data):
  """A clipped-sum run gets clipped mixtures of real digits; conflicting gains are refused."""
  from configs import mnist_ncsn  # pylint: disable=import-outside-toplevel
  config = mnist_ncsn.get_config()
  config.prior.ngf = 4
  config.prior.allow_random_weights = True
  config.data.path = str(shared_data / "mnist")
  config.num_mixtures = 50
  config.mixing.kind = "clipped_sum"
  job = separation.build_job(config)
  mixture_set = separation.load_mixtures(config, job)
  truth = mixture_set.ground_truth
  np.testing.assert_allclose(mixture_set.mixtures, np.minimum(truth.sum(1), 1.0), atol=1e-6)
  assert (truth.sum(1) > 1.0).any(), "real digit pairs overlap, so the clip must matter"
  config.mixing.kind = "sum"
  config.mixture.alphas = (1.0, 0.5)  # Gains live in config.mixing only.
  with pytest.raises(ValueError, match="config.mixing.alphas only"):
    separation.load_mixtures(config, separation.build_job(config))


def test_colorization_run_reports_the_grayscale_baseline(tmp_path):
  """A grayscale mixing run (k = 1, 3-channel prior) scores the grayscale-input baseline."""
  config = _toy_config(num_mixtures=3, batch_size=3)
  config.priors = ()
  config.prior = config_dict.ConfigDict({
      "name": "gaussian_toy", "image_shape": (8, 8, 3), "mean": 0.4, "std": 0.1,
      "component": 0, "seed": 0})
  config.mixing.kind = "grayscale"
  config.mixing.alphas = (1.0,)
  config.mixture.num_components = 1
  summary = separation.run(config, str(tmp_path))
  with np.load(tmp_path / "separations.npz") as out:
    assert out["mixtures"].shape == (3, 8, 8, 1)
    assert out["components"].shape == (3, 1, 8, 8, 3)
    gray = np.repeat(out["mixtures"], 3, axis=-1)
    expected = -10 * np.log10(np.mean((gray - out["ground_truth"][:, 0])**2, axis=(1, 2, 3)))
  assert summary["average_baseline_psnr"]["mean"] == pytest.approx(expected.mean(), rel=1e-5)
  assert summary["baseline"] == "gray image"
  from basis_jax.evaluation import report  # pylint: disable=import-outside-toplevel
  report.evaluate(str(tmp_path), inception="never")
  report = (tmp_path / "eval.md").read_text()
  assert "PSNR of 3 colorized images against the original, one posterior sample" in report
  assert "| gray image |" in report and "| colorized |" in report and "Average" not in report


def test_component_pngs_on_request(tmp_path):
  config = _toy_config(num_mixtures=3, batch_size=3)
  separation.run(config, str(tmp_path))
  assert not (tmp_path / "components").exists()
  config.output.component_pngs = True  # `output` may change on resume: nothing recomputes.
  separation.run(config, str(tmp_path))
  assert sorted(p.name for p in (tmp_path / "components").iterdir()) == [
      f"mixture_{n:05d}_component_{j}.png" for n in range(3) for j in (1, 2)]


def test_prior_and_priors_together_are_refused():
  config = _toy_config()
  config.prior = config_dict.ConfigDict({"name": "ncsn", "weights": "mine.npz"})
  with pytest.raises(errors.ConfigError, match="config.priors would silently replace"):
    separation.build_job(config)


def test_priors_in_different_data_spaces_are_refused(monkeypatch):
  """Mixtures are mapped into priors[0]'s data space only."""
  real_load = priors_lib.load

  def load(spec, schedule):
    prior = real_load(spec, schedule)
    return prior if spec.component == 0 else _padded(prior, (14, 14, 1))

  monkeypatch.setattr(priors_lib, "load", load)
  with pytest.raises(errors.ConfigError, match="one data space"):
    separation.build_job(_toy_config())


def test_clipped_sum_refuses_gains_it_would_ignore():
  config = _toy_config(**{"mixing.kind": "clipped_sum", "mixing.alphas": (0.5, 0.5)})
  with pytest.raises(errors.ConfigError, match="set every α to 1"):
    separation.build_job(config)


@pytest.mark.parametrize("path, named", [
    ("sampler.unroll", "config.sampler has no field 'unroll'"),
    ("schedule.likelihood_weight", "config.schedule has no field 'likelihood_weight'"),
    ("output.grid_rows", "no field 'output.grid_rows'"),
    ("select", "no field 'select'"),
    ("max_device_memory_gb", "no field 'max_device_memory_gb'"),
])
def test_a_config_missing_a_field_is_refused_before_any_work(tmp_path, path, named):
  # Defaults live in configs/base_separation.py only: the code supplies none of its own.
  config = _toy_config()
  *parents, last = path.split(".")
  section = config
  for part in parents:
    section = section[part]
  del section[last]
  with pytest.raises(errors.ConfigError, match=re.escape(named)) as refused:
    separation.run(config, str(tmp_path / "run"))
  assert "configs/base_separation.py" in str(refused.value.hint)
  assert not (tmp_path / "run").exists()


def test_the_run_checks_its_sections_once(monkeypatch, tmp_path):
  calls = []
  original = run_config.check
  monkeypatch.setattr(run_config, "check", lambda config: calls.append(1) or original(config))
  separation.run(_toy_config(num_mixtures=2, batch_size=2), str(tmp_path))
  assert calls == [1]
