"""Glow training and serial noise fine-tuning (tiny model, CPU, real MNIST when present)."""

import dataclasses
import gzip
import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from basis_jax import errors

from basis_jax.files import checkpoint_io
from basis_jax.sampling import schedules
from basis_jax.training import glow_training, glow_workdir, optim
from configs import base_training, mnist_glow
from basis_jax.priors import glow
from tests.conftest import shared_data_dir

CONFIG = glow.GlowConfig(image_shape=(16, 16, 1), levels=2, depth=2, width=16)
SIGMAS = (1.0, 0.1, 0.01)


def mnist16(split: str, count: int) -> np.ndarray:
  """MNIST padded to 32×32 and 2×2-averaged to 16×16, re-quantised to 8 bits, in [0, 1]."""
  prefix = "train" if split == "train" else "t10k"
  path = shared_data_dir() / "mnist" / f"{prefix}-images-idx3-ubyte.gz"
  if not path.exists():
    pytest.skip(f"MNIST not found at {path}")
  with gzip.open(path) as f:
    images = np.frombuffer(f.read(), np.uint8)[16:].reshape(-1, 28, 28)[:count]
  images = np.pad(images, ((0, 0), (2, 2), (2, 2))).astype(np.float32)
  images = images.reshape(-1, 16, 2, 16, 2).mean(axis=(2, 4))
  return (np.round(images) / 255.0)[..., None].astype(np.float32)


def options(**overrides):
  """A full TrainOptions of the tiny runs (Adamax 1e-3, 5 warm-up steps per stage)."""
  values = dict(sigmas=SIGMAS, batch_size=32, train_steps=30, finetune_steps=10, seed=0,
                init_batch_size=64, eval_batch_size=100, log_every=10, checkpoint_every=100,
                max_restarts=3, max_seconds=0.0,
                optimizer=optim.settings_from_config(
                    base_training.optim(name="adamax", warmup_steps=5)))
  values.update(overrides)
  return glow_training.TrainOptions(**values)


def test_finetuning_lowers_nll_at_every_sigma(tmp_path):
  """Each σ stage trains its own count of steps (`finetune_steps_per_stage`, the smallest σ
  first) and lowers the held-out bits/dim at its σ."""
  result = glow_training.train(CONFIG, options(finetune_steps_per_stage=(12, 10, 8)),
                               mnist16("train", 1000), mnist16("test", 100), str(tmp_path))
  stages = {m["sigma"]: m for m in result["metrics"]}
  assert sorted(stages) == [0.0, 0.01, 0.1, 1.0]
  assert [stages[s]["steps"] for s in (0.0, 0.01, 0.1, 1.0)] == [30, 12, 10, 8]
  for sigma, m in stages.items():
    assert m["bpd_after"] < m["bpd_before"], (sigma, m)
  weights = glow.load_weights(str(tmp_path / glow_workdir.STACKED_FILE))
  assert weights.sigmas == SIGMAS  # Largest σ first, the sampler's level order.
  assert weights.config == CONFIG


def test_modulation_finetuning_shares_the_clean_body_and_stores_it_once(tmp_path):
  """finetune_params='modulation': each σ stage changes only the modulation parameters, the
  stacked file holds the rest once, and the prior gives every level exactly its stage's
  model; the stored values are the body once plus the modulation parameters per σ."""
  train, test = mnist16("train", 200), mnist16("test", 50)
  opts = options(train_steps=6, finetune_steps=4, batch_size=16, init_batch_size=32,
                 eval_batch_size=50)
  run = tmp_path / "modulation"
  glow_training.train(CONFIG, dataclasses.replace(opts, finetune_params="modulation"), train,
                      test, str(run))
  flat = lambda path: checkpoint_io.flatten(glow.load_weights(str(path)).state)[0]
  clean = flat(run / glow_workdir.CLEAN_FILE)
  stages = [flat(run / f"sigma_{stage:02d}.npz") for stage in (1, 2, 3)]  # σ ascending.
  for stage in stages:
    changed = {k for k in clean if not np.array_equal(clean[k], stage[k])}
    assert changed and all(glow.is_modulation_parameter(k) for k in changed)
    assert any(k.endswith("conv1/actnorm/logs") for k in changed)
  stacked = glow.load_weights(str(run / glow_workdir.STACKED_FILE))
  assert stacked.per_sigma == "modulation" and stacked.sigmas == SIGMAS
  leaves = checkpoint_io.flatten(stacked.state)[0]
  assert leaves["levels/0/steps/0/coupling_net/conv1/kernel"].shape[0] == 1
  assert leaves["levels/0/steps/0/actnorm/logs"].shape[0] == len(SIGMAS)
  # Stored: the shared body once plus the modulation parameters per σ.
  per_sigma = sum(v.size for k, v in clean.items() if glow.is_modulation_parameter(k))
  body = sum(v.size for v in clean.values()) - per_sigma
  assert sum(v.size for v in leaves.values()) == body + len(SIGMAS) * per_sigma
  prior_config = mnist_glow.glow_prior(image_shape=(16, 16, 1), levels=2, depth=2, width=16,
                                       weights=str(run / glow_workdir.STACKED_FILE))
  prior = glow.load(prior_config, schedules.Schedule(SIGMAS, 1, 1e-5))
  for level, stage in enumerate(reversed(stages)):  # Level 0 is the largest σ.
    selected = checkpoint_io.flatten(prior.select_level(prior.params, level))[0]
    for name, value in stage.items():
      np.testing.assert_array_equal(np.asarray(selected[name]), value, err_msg=name)
  with pytest.raises(errors.ConfigError, match="finetune_params must be one of"):
    options(finetune_params="kernels")


def test_growing_a_trained_glow_wider_keeps_its_density_then_trains_on(tmp_path):
  """grow_from: the clean stage starts from the narrower model widened by `glow.widen`, so
  its held-out bits/dim at the start equal the narrow model's at its end. An LU model's
  fixed permutation then comes from the narrow model, not from the run's seed: the compact
  state carries it, so the grown run continues exactly in an empty workdir without the
  narrow file."""
  train, test = mnist16("train", 200), mnist16("test", 50)
  opts = options(train_steps=6, finetune_steps=1, sigmas=(0.1,), batch_size=16,
                 init_batch_size=32, eval_batch_size=50, checkpoint_every=2)
  lu = dataclasses.replace(CONFIG, lu_decomposed=True)
  narrow = glow_training.train(lu, dataclasses.replace(opts, seed=1), train, test,
                               str(tmp_path / "narrow"), stop_after_steps=6)  # Clean only.
  narrow_file = str(tmp_path / "narrow" / glow_workdir.CLEAN_FILE)
  wide_config = dataclasses.replace(lu, width=24)
  wide = glow_training.train(wide_config, opts, train, test, str(tmp_path / "wide"),
                             grow_from=narrow_file)
  start, end = narrow["metrics"][0], wide["metrics"][0]
  assert end["stage"] == start["stage"] == 0
  # Equal up to float32 summation order (the wider convolutions add exact zeros); a wrong
  # widening moves it by percents.
  assert end["bpd_before"] == pytest.approx(start["bpd_after"], rel=1e-4)
  assert end["bpd_after"] < end["bpd_before"]
  # The model a state is training (`model_from_state`, for mid-stage measurements): the last
  # checkpoint's parameters, here the σ stage's file, and the narrow model's permutation.
  config, model = glow_workdir.model_from_state(
      str(tmp_path / "wide" / glow_workdir.STATE_FILE))
  last_stage = glow.load_weights(str(tmp_path / "wide" / "sigma_01.npz"))
  assert config == wide_config
  for (path, x), (_, y) in zip(jax.tree_util.tree_leaves_with_path(nnx.state(model)),
                               jax.tree_util.tree_leaves_with_path(last_stage.state)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))
  with pytest.raises(errors.InputFileError, match="not a compact Glow training state"):
    glow_workdir.model_from_state(narrow_file)
  glow_training.train(wide_config, opts, train, test, str(tmp_path / "b"),
                      grow_from=narrow_file, stop_after_steps=2)
  glow_training.train(wide_config, opts, train, test, str(tmp_path / "c"),
                      init_weights=str(tmp_path / "b" / glow_workdir.STATE_FILE))
  a = np.load(tmp_path / "wide" / glow_workdir.STACKED_FILE)
  c = np.load(tmp_path / "c" / glow_workdir.STACKED_FILE)
  assert any(name.endswith("/p") for name in a.files)
  for name in a.files:
    np.testing.assert_array_equal(a[name], c[name], err_msg=name)
  with pytest.raises(errors.InputFileError, match="narrow/glow_clean.npz: Can only widen"):
    glow_training.train(dataclasses.replace(lu, depth=3), opts, train, test,
                        str(tmp_path / "deeper"), grow_from=narrow_file)


@pytest.mark.parametrize("per_stage,message", [
    ((10, 10), r"has 2 entries but the σ ladder has 3"),
    ((10, 0, 10), r"whole numbers >= 1, got \(10, 0, 10\)")])
def test_bad_steps_per_stage_are_refused(per_stage, message):
  with pytest.raises(errors.ConfigError, match=message):
    options(finetune_steps_per_stage=per_stage)


def test_cooldown_lowers_the_rate_linearly_over_the_last_fraction_of_every_stage():
  """train.cooldown_fraction: after the warm-up the rate is constant until the last
  C = round(f · steps) steps of the stage, which fall linearly: C/(C+1), ..., 1/(C+1)."""
  opts = options(train_steps=40, finetune_steps_per_stage=(20, 8, 4), cooldown_fraction=0.25)
  rates = lambda stage: np.array([glow_training.learning_rate(opts, stage, step, 1.0)
                                  for step in range(opts.stage_steps(stage))]) / 1e-3
  np.testing.assert_allclose(rates(0)[:5], [0.2, 0.4, 0.6, 0.8, 1.0])  # Warm-up, 5 steps.
  np.testing.assert_allclose(rates(0)[5:30], 1.0)
  np.testing.assert_allclose(rates(0)[30:], np.arange(10, 0, -1) / 11)  # The last 10 of 40.
  np.testing.assert_allclose(rates(1)[-6:], [1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])  # 5 of 20.
  np.testing.assert_allclose(rates(2), [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 2 / 3, 1 / 3])  # 2 of 8.
  np.testing.assert_allclose(rates(3), [0.2, 0.4, 0.6, 0.5])  # 1 of 4: warm-up and cool-down meet.
  # A restart's halved rate scales the whole schedule; no cool-down keeps it constant.
  assert glow_training.learning_rate(opts, 0, 35, 0.5) == pytest.approx(0.5 * 5 / 11 * 1e-3)
  plain = options(train_steps=40)
  assert glow_training.learning_rate(plain, 0, 39, 1.0) == pytest.approx(1e-3)


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_a_cooldown_fraction_outside_zero_to_one_is_refused(fraction):
  with pytest.raises(errors.ConfigError, match=r"train.cooldown_fraction must be in \[0, 1\)"):
    options(cooldown_fraction=fraction)


def test_stacking_refuses_a_shared_parameter_that_differs():
  a, b = {"w": np.zeros(3), "s": np.zeros(2)}, {"w": np.ones(3), "s": np.zeros(2)}
  stacked = glow.stack_states([a, b], shared={"w": False, "s": True})
  assert stacked["w"].shape == (2, 3) and stacked["s"].shape == (1, 2)
  with pytest.raises(ValueError, match="marked shared differs"):
    glow.stack_states([a, b], shared={"w": True, "s": True})


def test_resume_is_exact(tmp_path):
  train, test = mnist16("train", 200), mnist16("test", 50)
  opts = options(train_steps=6, finetune_steps=4, sigmas=(0.5, 0.05), checkpoint_every=3)
  glow_training.train(CONFIG, opts, train, test, str(tmp_path / "a"))
  # A wall-clock budget stops after the first step, checkpointed.
  budget = glow_training.train(CONFIG, dataclasses.replace(opts, max_seconds=1e-6), train,
                               test, str(tmp_path / "b"))
  assert budget["stopped"] and len(os.listdir(tmp_path / "b" / "checkpoints")) == 2  # 0, 1.
  # Interrupted twice more (mid-stage and across a stage boundary), then finished.
  for stop in (4, 3, None):
    result = glow_training.train(CONFIG, opts, train, test, str(tmp_path / "b"),
                                 stop_after_steps=stop)
    assert result["stopped"] == (stop is not None)
  a = np.load(tmp_path / "a" / glow_workdir.STACKED_FILE)
  b = np.load(tmp_path / "b" / glow_workdir.STACKED_FILE)
  assert set(a.files) == set(b.files)
  for name in a.files:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)
  # One record per log window (here: each stage's end, and each stop), in step order.
  records = lambda run: [json.loads(line) for line in
                         open(tmp_path / run / glow_workdir.STEPS_FILE)]
  assert [(r["step"], r["stage"]) for r in records("a")] == [(6, 0), (10, 1), (14, 2)]
  assert [r["step"] for r in records("b")] == [1, 5, 6, 8, 10, 14]


def test_non_finite_loss_restarts_then_fails_clearly(tmp_path, caplog):
  train = mnist16("train", 64)
  train[:] = np.nan  # Every batch is poisoned: each restart fails again.
  opts = options(train_steps=4, sigmas=(0.1,), max_restarts=2, init_batch_size=8)
  caplog.set_level("WARNING")
  with pytest.raises(glow_training.InvertibilityError, match="lost invertibility"):
    glow_training.train(CONFIG, opts, train, mnist16("test", 8), str(tmp_path))
  assert sum("restarting from the last good checkpoint" in r.message
             for r in caplog.records) == 2


def test_bad_images_are_refused(tmp_path):
  with pytest.raises(ValueError, match=r"train_images must be \[N, 16, 16, 1\]"):
    glow_training.train(CONFIG, options(), np.zeros((4, 28, 28, 1)), np.zeros((4, 16, 16, 1)),
                        str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")


def test_resume_with_another_ladder_is_refused(tmp_path):
  """Neither a checkpoint nor a finished σ file may be continued or labelled at a new σ."""
  train, test = mnist16("train", 64), mnist16("test", 16)
  small = dict(train_steps=2, finetune_steps=2, init_batch_size=16, eval_batch_size=16,
               batch_size=16)
  # Stop one step into stage 2: stage 1 (σ = 0.1) is finished and written.
  glow_training.train(CONFIG, options(sigmas=(0.1, 0.2), **small), train, test,
                      str(tmp_path), stop_after_steps=5)
  assert (tmp_path / "sigma_01.npz").exists()
  other = options(sigmas=(0.15, 0.2), **small)
  with pytest.raises(errors.ConfigError, match=r"trained with the σ ladder \(0.1, 0.2\)"):
    glow_training.train(CONFIG, other, train, test, str(tmp_path))
  # A workdir without the recorded ladder: each σ file's own stage_sigma is checked.
  (tmp_path / glow_workdir.LADDER_FILE).unlink()
  with pytest.raises(errors.ConfigError, match=r"fine-tuned at σ = 0.1, .* σ = 0.15 at stage 1"):
    glow_training.train(CONFIG, other, train, test, str(tmp_path))
  assert not (tmp_path / glow_workdir.STACKED_FILE).exists()


def test_resume_with_changed_train_settings_is_refused_naming_the_keys(tmp_path):
  """experiments.train_glow compares the workdir's config.json before writing it."""
  from tests.test_cli import _assert_user_error, _run  # pylint: disable=import-outside-toplevel
  command = ["-m", "experiments.train_glow", "--config=configs/train_glow_mnist.py:small",
             f"--workdir={tmp_path}", f"--config.data.path={tmp_path / 'no_data'}"]
  # Each start records its config, then stops at the missing data (cheap: no training).
  _assert_user_error(_run(command), "no_data does not exist")
  saved = (tmp_path / "config.json").read_text()
  result = _run([*command, "--config.optim.lr=5e-4", "--config.train.seed=1",
                 "--config.train.log_every=7"])
  _assert_user_error(result, "different config", "optim.lr, train.seed")
  assert "train.log_every" not in result.stderr.splitlines()[-2]
  assert "--allow_config_change" in result.stderr.splitlines()[-1]
  assert (tmp_path / "config.json").read_text() == saved  # The refused start wrote nothing.
  # Logging keys may change; allow_config_change accepts the rest (and records it).
  _assert_user_error(_run([*command, "--config.train.log_every=7"]), "no_data does not exist")
  _assert_user_error(_run([*command, "--config.optim.lr=5e-4",
                           "--allow_config_change"]), "no_data does not exist")
  assert json.loads((tmp_path / "config.json").read_text())["optim"]["lr"] == 5e-4
  # A run saved before train.finetune_steps_per_stage and train.cooldown_fraction existed
  # resumes at their defaults.
  old = json.loads((tmp_path / "config.json").read_text())
  del old["train"]["finetune_steps_per_stage"], old["train"]["cooldown_fraction"]
  (tmp_path / "config.json").write_text(json.dumps(old))
  _assert_user_error(_run([*command, "--config.optim.lr=5e-4"]), "no_data does not exist")


def test_compact_training_state_continues_exactly_in_an_empty_workdir(tmp_path):
  """training_state.npz (what a session commits) resumes on another machine bit-exactly,
  with a cool-down (its rates are a function of the step alone)."""
  train, test = mnist16("train", 200), mnist16("test", 50)
  opts = options(train_steps=4, finetune_steps=4, sigmas=(0.5, 0.05), checkpoint_every=2,
                 cooldown_fraction=0.5)
  glow_training.train(CONFIG, opts, train, test, str(tmp_path / "a"))
  # Stopped mid-way through the second σ stage: the state holds stage 1's finished weights.
  glow_training.train(CONFIG, opts, train, test, str(tmp_path / "b"), stop_after_steps=10)
  state = tmp_path / "b" / glow_workdir.STATE_FILE
  assert glow_workdir.is_training_state(str(state))
  assert os.path.getsize(state) < 200_000
  result = glow_training.train(CONFIG, opts, train, test, str(tmp_path / "c"),
                               init_weights=str(state))
  assert not result["stopped"]
  a = np.load(tmp_path / "a" / glow_workdir.STACKED_FILE)
  c = np.load(tmp_path / "c" / glow_workdir.STACKED_FILE)
  for name in a.files:
    np.testing.assert_array_equal(a[name], c[name], err_msg=name)
  assert [m["stage"] for m in result["metrics"]] == [0, 1, 2]
  # Another ladder or seed cannot continue it.
  with pytest.raises(errors.ConfigError, match="σ ladder"):
    glow_training.train(CONFIG, options(sigmas=(0.5, 0.1)), train, test,
                        str(tmp_path / "d"), init_weights=str(state))
