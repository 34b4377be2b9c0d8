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
