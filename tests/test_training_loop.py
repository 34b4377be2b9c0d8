"""The shared training loop with a toy objective: resume, the non-finite policy, batches."""

import json
import logging

import jax.numpy as jnp
import numpy as np
import pytest

from basis_jax.training import training_loop
from basis_jax.errors import UserError


class Descent(training_loop.Objective):
  """Gradient descent on (w - 3)²; `poisoned(step, lr_scale)` makes a step's loss NaN."""

  non_finite = "The toy loss became non-finite"
  non_finite_hint = "lower the learning rate."

  def __init__(self, poisoned=lambda step, lr_scale: False):
    self.poisoned, self.after = poisoned, []

  def step(self, state, step, lr_scale):
    loss = (state["w"] - 3.0) ** 2
    if self.poisoned(step, lr_scale):
      loss = loss * jnp.nan
    return {"w": state["w"] - 0.1 * lr_scale * 2 * (state["w"] - 3.0)}, {"loss": loss}

  def report(self, state, window, steps, done, last):
    return f"loss {float(window['loss']) / steps:.3f}", {"loss": float(window["loss"]) / steps}

  def after_step(self, done, state):
    self.after.append(done)


class MemoryCheckpoints:

  def __init__(self):
    self.saved = {}

  def latest_step(self):
    return max(self.saved, default=None)

  def save(self, step, state, progress):
    self.saved[step] = (state, progress)

  def restore(self, state):
    return self.saved[self.latest_step()]


def settings(**overrides):
  values = dict(num_steps=6, log_every=2, checkpoint_every=2)
  values.update(overrides)
  return training_loop.LoopSettings(**values)


def test_a_stopped_run_resumes_to_the_same_state_and_metrics(tmp_path):
  start = training_loop.Progress(0)
  straight_log = training_loop.MetricsLog(str(tmp_path / "straight.jsonl"))
  straight, done = training_loop.run(Descent(), {"w": jnp.float32(0)}, start, settings(),
                                     MemoryCheckpoints(), straight_log)
  assert done.step == 6
  checkpoints, log = MemoryCheckpoints(), training_loop.MetricsLog(str(tmp_path / "b.jsonl"))
  _, stopped = training_loop.run(Descent(), {"w": jnp.float32(0)}, start,
                                 settings(log_every=1), checkpoints, log, stop_after=3)
  assert stopped.step == 3 and checkpoints.latest_step() == 3  # The last step is saved.
  # As if killed after logging step 4 but before its checkpoint landed.
  log.append(4, {"loss": -1.0})
  state, progress = checkpoints.restore(None)
  log.truncate(progress.step)
  resumed, done = training_loop.run(Descent(), state, progress, settings(log_every=1),
                                    checkpoints, log)
  assert done.step == 6 and float(resumed["w"]) == float(straight["w"])
  records = lambda name: [json.loads(line) for line in open(tmp_path / name)]
  assert [r["step"] for r in records("b.jsonl")] == [1, 2, 3, 4, 5, 6]
  # Windows of two steps (straight) hold the mean of the one-step windows (resumed).
  pairs = np.reshape([r["loss"] for r in records("b.jsonl")], (3, 2)).mean(1)
  np.testing.assert_allclose([r["loss"] for r in records("straight.jsonl")], pairs, rtol=1e-6)


def test_a_non_finite_window_restarts_with_half_the_learning_rate(caplog):
  # Step 3 fails at the full learning rate only: one restart from step 2, then it finishes.
  objective = Descent(lambda step, lr_scale: step == 3 and lr_scale == 1.0)
  checkpoints = MemoryCheckpoints()
  caplog.set_level(logging.WARNING)
  _, done = training_loop.run(objective, {"w": jnp.float32(0)}, training_loop.Progress(0),
                              settings(max_restarts=1), checkpoints)
  assert (done.step, done.lr_scale, done.restarts) == (6, 0.5, 1)
  assert "between steps 2 and 4; restarting from the last good checkpoint" in caplog.text
  assert sorted(checkpoints.saved) == [2, 4, 6]  # Nothing non-finite was saved.
  assert objective.after == [1, 2, 3, 3, 4, 5, 6]  # Not after the failed window's end.


def test_records_logged_after_the_last_checkpoint_are_redone_once_after_a_restart(tmp_path):
  log = training_loop.MetricsLog(str(tmp_path / "metrics.jsonl"), offset=100)
  objective = Descent(lambda step, lr_scale: step == 5 and lr_scale == 1.0)
  training_loop.run(objective, {"w": jnp.float32(0)}, training_loop.Progress(0),
                    settings(num_steps=8, log_every=1, checkpoint_every=4, max_restarts=1),
                    MemoryCheckpoints(), log)
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  # Step 5 was logged, step 6 failed: back to step 4, and step 5 is logged once, anew.
  assert [r["step"] for r in records] == [101, 102, 103, 104, 105, 106, 107, 108]


def test_a_loss_that_stays_non_finite_is_a_user_error_naming_the_last_good_checkpoint():
  objective = Descent(lambda step, lr_scale: step >= 3)
  with pytest.raises(training_loop.NonFiniteLossError,
                     match=r"non-finite between steps 2 and 4 and did not recover after 2 "
                           r"restart\(s\).*last good checkpoint \(step 2\)") as error:
    training_loop.run(objective, {"w": jnp.float32(0)}, training_loop.Progress(0),
                      settings(max_restarts=2), MemoryCheckpoints())
  assert isinstance(error.value, UserError) and error.value.hint == "lower the learning rate."


def test_batch_order_is_a_seeded_permutation_per_epoch():
  order = training_loop.BatchOrder(10, 4, stream=(0, 1))
  epoch0 = np.concatenate([order(0), order(1)])
  assert len(set(epoch0.tolist())) == 8  # Two batches of one permutation: no repeats.
  np.testing.assert_array_equal(order(2), training_loop.BatchOrder(10, 4, (0, 1))(2))
  assert not np.array_equal(order(0), training_loop.BatchOrder(10, 4, (0, 2))(0))
  few = training_loop.BatchOrder(3, 5, stream=(0,))(0)  # Fewer items than one batch.
  assert few.shape == (5,) and few.max() < 3


def test_every_optim_field_is_read_from_the_config_and_a_missing_one_is_named():
  from basis_jax.errors import ConfigError  # pylint: disable=import-outside-toplevel
  from basis_jax.training import optim  # pylint: disable=import-outside-toplevel
  from configs import base_training  # pylint: disable=import-outside-toplevel
  section = base_training.optim(name="adamax", lr=3e-4, warmup_steps=7, beta2=0.99)
  settings = optim.settings_from_config(section)
  assert (settings.name, settings.lr, settings.warmup_steps, settings.beta2) == (
      "adamax", 3e-4, 7, 0.99)
  del section["beta2"]
  with pytest.raises(ConfigError, match=r"config.optim has no field\(s\) \['beta2'\]"):
    optim.settings_from_config(section)
  with pytest.raises(ValueError, match="Unknown config.optim field"):
    base_training.optim(learning_rate=1e-3)


def test_glow_adamax_with_a_per_step_rate_keeps_the_state_glow_states_were_saved_with():
  """Glow's optimizer now comes from optim.make: its state has the structure (and the
  updates) of the inject_hyperparams(adamax) it was built with before, so compact Glow
  training states written earlier still load and continue the same way."""
  import jax  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from basis_jax.training import optim  # pylint: disable=import-outside-toplevel
  from configs import base_training  # pylint: disable=import-outside-toplevel
  params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
  grads = jax.tree.map(lambda p: jnp.sin(p) + 0.1, params)
  tx = optim.make(optim.settings_from_config(base_training.optim(name="adamax")),
                  rate_per_step=True)
  before = optax.inject_hyperparams(optax.adamax)(learning_rate=0.0)
  state, old_state = tx.init(params), before.init(params)
  assert jax.tree.structure(state) == jax.tree.structure(old_state)
  state = optim.set_rate(state, 2e-3)
  old_state.hyperparams["learning_rate"] = jnp.asarray(2e-3, jnp.float32)
  updates, _ = tx.update(grads, state, params)
  old_updates, _ = before.update(grads, old_state, params)
  for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(old_updates)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("trainer,remove,named", [
    ("score", "heldout_every", "'heldout_every'"),
    ("score", "sigmas.num_bands", "'sigmas.num_bands'"),
    ("score", "optim.grad_clip", r"config.optim has no field\(s\) \['grad_clip'\]"),
    ("classifier", "crop_padding", "'crop_padding'"),
    ("classifier", "optim.momentum", r"\['momentum'\]"),
])
def test_a_training_config_missing_a_field_is_refused_by_name_before_any_work(
    tmp_path, trainer, remove, named):
  from basis_jax.errors import ConfigError  # pylint: disable=import-outside-toplevel
  from basis_jax.training import classifier_training, score_training  # pylint: disable=import-outside-toplevel
  from configs import train_classifier_cifar10, train_score_unet_mnist  # pylint: disable=import-outside-toplevel
  config = (train_score_unet_mnist.get_config() if trainer == "score"
            else train_classifier_cifar10.get_config())
  *parents, leaf = remove.split(".")
  section = config
  for name in parents:
    section = section[name]
  del section[leaf]
  workdir = tmp_path / "run"
  with pytest.raises(ConfigError, match=named):
    if trainer == "score":
      score_training.train_and_evaluate(config, str(workdir))
    else:
      classifier_training.train(config, str(workdir))
  assert not workdir.exists()
