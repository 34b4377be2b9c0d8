"""The report programs' own logic: sweep settings and the training-log table."""

import pytest

from configs import mnist_unet
from experiments import psnr_sweep, training_log


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
