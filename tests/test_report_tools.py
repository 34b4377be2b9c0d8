"""The report programs' own logic: sweep settings, the training-log table and the best-of-S
test report."""

import json

import numpy as np
import pytest

from basis_jax import errors
from configs import mnist_unet
from studies import best_of_s_report, psnr_sweep, training_log


def test_sweep_settings_parse_and_apply_without_touching_the_base_config():
  name, overrides = psnr_sweep.parse_setting(
      "S4:schedule.steps_per_level=20,sampler.num_samples=4,prior.use_ema=False")
  assert name == "S4"
  assert overrides == {"schedule.steps_per_level": 20, "sampler.num_samples": 4,
                       "prior.use_ema": False}
  base = mnist_unet.get_config()
  config = psnr_sweep._apply(base, overrides)
  assert (config.schedule.steps_per_level, config.sampler.num_samples) == (20, 4)
  assert config.prior.use_ema is False and base.prior.use_ema is True
  with pytest.raises(KeyError, match="schedule.stp_lr"):
    psnr_sweep._apply(base, {"schedule.stp_lr": 1e-5})


def _sweep_row(name, per_mixture, indices):
  per_mixture = np.asarray(per_mixture, np.float64)
  return {"name": name, "psnr": {"mean": per_mixture.mean(), "ci95": 9.9}, "above_29_5": 0.0,
          "baseline": {"mean": 15.0}, "evals": 500, "seconds": 10.0, "n": len(per_mixture),
          "per_mixture": per_mixture, "indices": indices}


def test_sweep_table_compares_settings_mixture_by_mixture():
  indices = np.arange(8).reshape(4, 2)
  spread = np.array([10.0, 14.0, 18.0, 22.0])  # Mixtures differ far more than settings.
  base = _sweep_row("base", spread, indices)
  better = _sweep_row("better", spread + [0.4, 0.5, 0.6, 0.5], indices)
  other = _sweep_row("other_mixtures", spread + 1.0, indices[::-1])
  table = psnr_sweep.markdown([{"name": "bad", "diverged": "NaN"}, base, better, other])
  lines = table.splitlines()
  assert "Δ vs base (paired)" in lines[0]
  assert lines[2].startswith("| bad | diverged |")
  assert "| reference |" in lines[3]
  diff = psnr_sweep.paired_difference(better, base)
  assert diff["mean"] == pytest.approx(0.5)
  assert diff["ci95"] == pytest.approx(1.96 * np.std([0.4, 0.5, 0.6, 0.5], ddof=1) / 2,
                                       rel=1e-3)
  assert diff["better"] == 4
  assert f"| +0.50 ± {diff['ci95']:.2f}, better on 4/4 |" in lines[4]
  # Other mixtures (or another count) cannot be paired: no difference is claimed.
  assert psnr_sweep.paired_difference(other, base) is None and "| — |" in lines[5]


def test_training_log_rows_sum_window_times_and_keep_heldout_records():
  records = [
      {"step": 100, "steps_per_sec": 2.0, "loss": 30.0},
      {"step": 200, "steps_per_sec": 1.0, "loss": 28.0, "heldout_loss": [5.0, 9.0],
       "heldout_loss_ema": [6.0, 10.0], "heldout_sigmas": [1.0, 0.1], "lr": 5e-4},
      {"step": 300, "steps_per_sec": 1.0, "loss": 27.0, "heldout_loss": [4.0, 8.0],
       "heldout_sigmas": [1.0, 0.1]},
  ]
  first, second = training_log.rows(records, batch_size=64, log_every=100)
  # A file that starts mid-run (a branched cool-down): its first window is log_every steps.
  branched = training_log.rows([dict(r, step=r["step"] + 26000) for r in records], 64, 100)
  assert branched[0][1] == pytest.approx(first[1])
  step, hours, rate, loss, lr, heldout, sigmas = first
  assert step == 200 and loss == 28.0 and rate == 64.0 and lr == 5e-4
  assert hours == pytest.approx((50 + 100) / 3600)
  assert heldout == [6.0, 10.0] and sigmas == [1.0, 0.1]  # EMA losses when present.
  assert second[4] is None and second[5] == [4.0, 8.0]  # No lr logged; raw losses only.


def _noisy(truth, rms):
  """truth plus a ±rms checkerboard: PSNR exactly −20 log10(rms) against truth."""
  sign = np.where(np.indices(truth.shape[-3:-1]).sum(0) % 2 == 0, 1.0, -1.0)[..., None]
  return (truth + rms * sign).astype(np.float32)


def test_best_of_s_report_scores_chosen_chain0_oracle_and_wall_time(tmp_path):
  rng = np.random.default_rng(0)
  truth = rng.uniform(0.2, 0.8, (3, 2, 4, 4, 1)).astype(np.float32)
  # Chain 0 is 20 dB (rms 0.1) everywhere; chain 1 is 40 dB (rms 0.01) with its components
  # swapped, which the permutation matching must undo. Mixture 1 chose chain 0.
  samples = np.stack([_noisy(truth, 0.1), _noisy(truth, 0.01)[:, ::-1]], axis=1)
  chosen = np.array([1, 0, 1])
  components = samples[np.arange(3), chosen]
  np.savez(tmp_path / "separations.npz", mixtures=truth.sum(1), components=components,
           ground_truth=truth, samples=samples)
  (tmp_path / "config.json").write_text(json.dumps({"select": "likelihood"}))
  # Chunks of 2, 1 and 2 mixtures at 5, 3 and 900 s per mixture (the last one paused).
  (tmp_path / "metrics.jsonl").write_text(
      '{"chunk": [0, 2], "seconds": 10.0}\n{"chunk": [2, 3], "seconds": 3.0}\n'
      '{"chunk": [3, 5], "seconds": 1800.0}\n')
  report = best_of_s_report.run_report(str(tmp_path))
  assert report["chosen"]["mean"] == pytest.approx((40 + 20 + 40) / 3, abs=1e-3)
  assert report["chain0"]["mean"] == pytest.approx(20, abs=1e-3)
  assert report["single_sample"]["mean"] == pytest.approx(30, abs=1e-3)
  assert report["oracle"]["mean"] == pytest.approx(40, abs=1e-3)
  assert report["above_threshold"] == pytest.approx(4 / 6)  # 40 dB components only.
  assert report["chain0_above_threshold"] == 0.0
  assert report["seconds_per_100"] == 500.0 and report["select"] == "likelihood"
  table = best_of_s_report.markdown([("agnostic", "default", report)])
  assert "| agnostic | default | 2 | 3 | **33.33 ± " in table and "| 66.7 % |" in table
  assert table.rstrip().endswith("| 500 |")  # The median chunk: 5 s per mixture.


def test_best_of_s_report_refuses_bad_run_specs_and_runs_without_samples(tmp_path):
  assert best_of_s_report.parse_runs("a:x=d1, b:y=d2") == [("a", "x", "d1"), ("b", "y", "d2")]
  for bad in ("a=d1", "a:=d1", "a:x", ""):
    with pytest.raises(errors.ConfigError):
      best_of_s_report.parse_runs(bad)
  truth = np.zeros((2, 2, 4, 4, 1), np.float32)
  np.savez(tmp_path / "separations.npz", mixtures=truth.sum(1), components=truth,
           ground_truth=truth)
  with pytest.raises(errors.InputFileError, match="no samples"):
    best_of_s_report.run_report(str(tmp_path))


def test_a_study_report_is_its_text_and_its_numbers_beside_it(tmp_path):
  from basis_jax.files import atomic  # pylint: disable=import-outside-toplevel
  out = tmp_path / "table.md"
  atomic.write_report(str(out), "| a |\n", {"fd": np.float32(1.5), "rows": np.arange(2)})
  assert out.read_text() == "| a |\n"
  assert json.loads((tmp_path / "table.md.json").read_text()) == {"fd": 1.5, "rows": [0, 1]}
  # A record that cannot be written leaves no partial JSON file behind.
  with pytest.raises(TypeError):
    atomic.write_report(str(tmp_path / "bad.md"), "x", {"x": object()})
  assert not (tmp_path / "bad.md.json").exists()


def test_the_study_and_command_modules_tests_import_can_share_one_process():
  """absl flags live in one process-wide namespace, so two imported programs that define the
  same flag fail with DuplicateFlagError, and under pytest-xdist only when the two tests
  land in the same worker. Import every program module any test imports, together."""
  import pathlib  # pylint: disable=import-outside-toplevel
  import re  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  tests = pathlib.Path(__file__).parent
  pattern = re.compile(r"^\s*from (studies|experiments) import ([\w, ]+?)(?: as \w+)?\s*(?:#.*)?$",
                       re.M)
  modules = sorted({f"{package}.{name.strip()}" for path in tests.glob("*.py")
                    for package, names in pattern.findall(path.read_text())
                    for name in names.split(",")})
  assert "studies.best_of_s_report" in modules, modules  # The scan finds this file's imports.
  result = subprocess.run([sys.executable, "-c", "; ".join(f"import {m}" for m in modules)],
                          cwd=tests.parent, capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr[-2000:]
