"""The one resumable training loop: every trainer plugs its objective into `run`.

Users: `training/score_training.py` (denoising score matching for every score network) and
`training/glow_training.py` (Glow's negative log-likelihood of noisy data, one run of this loop per
σ stage). What the loop owns, the same for both:

- the batch order (`BatchOrder`): epochs of numpy permutations seeded by (stream, epoch),
  and the noise key of step s is `fold_in(stream key, s)` (`step_key`), so a resumed run
  feeds the same compiled step exactly the same inputs;
- the devices: one jit over a 1-D mesh, the batch axis sharded (`MeshBatches`), parameters
  and optimizer state replicated (the trainers place them);
- checkpoints every `checkpoint_every` steps and at the last step of a run, through the
  trainer's `Checkpoints` (what a checkpoint holds and which files go beside it);
- the non-finite policy: a window's metrics are read back at every log step and before
  every checkpoint, so nothing non-finite is ever saved; a non-finite window goes back to
  the last good checkpoint with half the learning rate, at most `max_restarts` times, then
  the run stops with `NonFiniteLossError` (a user error: the fix is a setting);
- progress lines and metrics.jsonl records per log window (`MetricsLog`, which drops the
  records past a resumed step);
- a wall-clock budget (`max_seconds`): the run checkpoints and stops early.

An objective (`Objective`) is the jitted update of one step plus how a window of its
summed metrics reads; see the two trainers for the two that exist.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from basis_jax.files import atomic, sharding
from basis_jax.errors import ConfigError, UserError


class NonFiniteLossError(UserError, FloatingPointError):
  """Training produced a non-finite loss and did not recover; nothing after the last good
  checkpoint is kept."""


@dataclasses.dataclass(frozen=True)
class Progress:
  """Where a run stands: the next step, and the non-finite policy's state (checkpointed)."""

  step: int
  lr_scale: float = 1.0
  restarts: int = 0


@dataclasses.dataclass(frozen=True)
class LoopSettings:
  """How one run of the loop goes (its step function is the objective's)."""

  num_steps: int  # The run ends at this step (a stage's length for Glow).
  log_every: int
  checkpoint_every: int  # 0: no checkpoints (and no resume).
  max_seconds: float = 0.0  # Wall-clock budget of this call; 0: none.
  max_restarts: int = 0  # Restarts from the last good checkpoint after a non-finite window.
  name: str = ""  # Prefix of the log lines, e.g. "[σ=0.1 (1/10)] ".


class Objective:
  """What a trainer plugs in (subclass it)."""

  # The start of the error and warning a non-finite window gets, e.g. "The training loss
  # became non-finite"; and the hint of the error (which setting to change).
  non_finite: str = "The training loss became non-finite"
  non_finite_hint: str = ""

  def step(self, state, step: int, lr_scale: float) -> tuple[Any, dict]:
    """One update: (state, metrics to sum over a window: 'loss', optionally 'non_finite')."""
    raise NotImplementedError

  def report(self, state, window: dict, steps: int, done: int,
             last: bool) -> tuple[str, dict]:
    """A window of `steps` summed metrics ending at step `done`: (progress text, record)."""
    raise NotImplementedError

  def after_step(self, done: int, state) -> None:
    """Anything periodic besides logs and checkpoints (e.g. sample grids)."""


class Checkpoints(Protocol):
  """Where a run's state is saved and from where it is restored (`OrbaxCheckpoints`)."""

  def save(self, step: int, state, progress: Progress) -> None:
    ...

  def restore(self, state) -> tuple[Any, Progress]:
    """The latest checkpoint, in the structure (and placement) of `state`."""

  def latest_step(self) -> int | None:
    """The step of this run's latest checkpoint (None: none yet)."""


class OrbaxCheckpoints:
  """The one checkpoint adapter of every trainer (score networks, the classifier, Glow).

  Orbax checkpoints under DIR/checkpoints, each holding {'state': the trainer's state,
  'progress': the loop's `Progress` and `extra`}, and `after_save(state)` after each save
  (e.g. the compact weights or training-state file).

  block_size: checkpoints are numbered `block`·block_size + step, and `latest_step()` sees
  only the current block (Glow's σ stages share one directory: `block` is the stage; the
  trainer sets it). None: numbered by step alone.
  extra: further progress values saved with each checkpoint (Glow: the held-out bits/dim
  its stage started from); `restore` reads them back into `restored_extra`.
  """

  def __init__(self, workdir: str, replicated, *, max_to_keep: int = 2, after_save=None,
               block_size: int | None = None):
    self.replicated, self.after_save, self.block_size = replicated, after_save, block_size
    self.block, self.extra, self.restored_extra = 0, {}, {}
    self.manager = ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def _number(self, step: int) -> int:
    return step if self.block_size is None else self.block * self.block_size + step

  def latest_step(self) -> int | None:
    """The step of the current block's latest checkpoint (None: none yet)."""
    latest = self.manager.latest_step()
    if latest is None or self.block_size is None:
      return latest
    block, step = divmod(latest, self.block_size)
    return step if block == self.block else None

  def latest_block(self) -> int | None:
    """The block of the latest checkpoint in the directory (None: none)."""
    latest = self.manager.latest_step()
    return None if latest is None or self.block_size is None else latest // self.block_size

  def _tree(self, state, progress: Progress):
    values = {"step": progress.step, "lr_scale": progress.lr_scale,
              "restarts": progress.restarts, **self.extra}
    return {"state": state, "progress": {
        k: np.asarray(v, np.float64 if isinstance(v, float) else np.int64)
        for k, v in values.items()}}

  def save(self, step: int, state, progress: Progress) -> None:
    if self.latest_step() == step:
      return  # Already saved (runs are deterministic, so it holds the same values).
    progress = dataclasses.replace(progress, step=step)
    self.manager.save(self._number(step), args=ocp.args.StandardSave(self._tree(state, progress)),
                      force=True)
    if self.after_save is not None and jax.process_index() == 0:
      self.manager.wait_until_finished()
      self.after_save(state)

  def restore(self, state):
    """The current block's latest checkpoint, in the structure (and placement) of `state`."""
    abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=self.replicated),
        self._tree(state, Progress(0)))
    restored = self.manager.restore(self._number(self.latest_step()),
                                    args=ocp.args.StandardRestore(abstract))
    values = {k: np.asarray(v).item() for k, v in restored["progress"].items()}
    self.restored_extra = {k: v for k, v in values.items()
                           if k not in ("step", "lr_scale", "restarts")}
    return restored["state"], Progress(int(values["step"]), float(values["lr_scale"]),
                                       int(values["restarts"]))

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


class BatchOrder:
  """Indices of the batch of step s: epochs of permutations seeded by (*stream, epoch).

  A pure function of (stream, step), so a resumed run sees the same batches. With fewer
  items than one batch, a batch is drawn with replacement (seeded by (*stream, epoch, 1)).
  """

  def __init__(self, num_items: int, batch_size: int, stream: tuple[int, ...]):
    self.num_items, self.batch_size, self.stream = num_items, batch_size, tuple(stream)
    self.steps_per_epoch = max(1, num_items // batch_size)
    self._epoch, self._order = None, None

  def __call__(self, step: int) -> np.ndarray:
    epoch, within = divmod(step, self.steps_per_epoch)
    if epoch != self._epoch:  # One permutation per epoch, not per step.
      self._epoch = epoch
      self._order = np.random.default_rng([*self.stream, epoch]).permutation(self.num_items)
    picked = self._order[within * self.batch_size:(within + 1) * self.batch_size]
    if picked.size < self.batch_size:
      picked = np.random.default_rng([*self.stream, epoch, 1]).integers(
          0, self.num_items, self.batch_size)
    return picked


def check_batch_size(batch_size: int, mesh, name: str) -> None:
  """The batch axis is split over the mesh's devices: refuse a size it does not divide."""
  if batch_size % mesh.size:
    raise ConfigError(f"{name} {batch_size} is not a multiple of the {mesh.size} devices.")


class MeshBatches:
  """The batch of step s as one array sharded over `mesh` (`BatchOrder`'s rows; each process
  reads only its own)."""

  def __init__(self, items: np.ndarray, batch_size: int, stream: tuple[int, ...], mesh):
    self.items, self.batch_size, self.mesh = items, batch_size, mesh
    self.order = BatchOrder(len(items), batch_size, stream)
    self.rows = sharding.process_row_range(mesh, batch_size)

  def __call__(self, step: int) -> jax.Array:
    local = self.items[self.order(step)[self.rows[0]:self.rows[1]]]
    return sharding.global_batch(self.mesh, local, self.batch_size)


def step_key(stream_key: jax.Array, step: int) -> jax.Array:
  """The random key of one step (dequantisation, noise, flips): fold_in(stream key, step)."""
  return jax.random.fold_in(stream_key, step)


class MetricsLog:
  """metrics.jsonl: one JSON record per log window, written by process 0.

  A run's step s is recorded as step `offset` + s (Glow's stages: the optimizer steps of
  the earlier stages), so the records of consecutive runs in one file stay in order.
  """

  def __init__(self, path: str, offset: int = 0):
    self.path, self.offset = path, offset

  def append(self, step: int, record: dict) -> None:
    if jax.process_index() == 0:
      with open(self.path, "a") as f:
        f.write(json.dumps({"step": self.offset + step, **record}) + "\n")

  def truncate(self, step: int) -> None:
    """Drops records past step `step` of this run (logged before a kill or a restart, to be
    redone)."""
    if not os.path.exists(self.path) or jax.process_index() != 0:
      return
    with open(self.path) as f:
      lines = [line for line in f if line.strip()]
    kept = [line for line in lines if json.loads(line)["step"] <= self.offset + step]
    if len(kept) != len(lines):
      with atomic.atomic_open(self.path, "w") as f:
        f.writelines(kept)
      logging.info("%s: dropped %d records past step %d.", os.path.basename(self.path),
                   len(lines) - len(kept), self.offset + step)


def run(objective: Objective, state, progress: Progress, settings: LoopSettings,
        checkpoints: Checkpoints, metrics: MetricsLog | None = None,
        stop_after: int | None = None) -> tuple[Any, Progress]:
  """Steps from `progress.step` to `settings.num_steps` (or `stop_after` more steps, or
  until `settings.max_seconds`); returns the final (state, progress)."""
  end = settings.num_steps
  if stop_after is not None:
    end = min(end, progress.step + stop_after)
  deadline = time.time() + settings.max_seconds if settings.max_seconds else None
  window, window_steps, window_start = None, 0, time.time()
  step = progress.step
  while step < end:
    state, step_metrics = objective.step(state, step, progress.lr_scale)
    # Summed on device, so the loop does not force a host sync every step.
    window = step_metrics if window is None else jax.tree.map(jnp.add, window, step_metrics)
    window_steps += 1
    done = step + 1
    last = done == end or (deadline is not None and _all_past(deadline))
    log = settings.log_every and (done % settings.log_every == 0 or last)
    save = settings.checkpoint_every and (done % settings.checkpoint_every == 0 or last)
    if log or save:
      window = jax.device_get(window)
      if not _finite(window):
        state, progress = _restart(objective, state, progress, settings, checkpoints,
                                   first=done - window_steps, done=done)
        if metrics is not None:
          metrics.truncate(progress.step)
        step, window, window_steps, window_start = progress.step, None, 0, time.time()
        continue
    progress = dataclasses.replace(progress, step=done)
    if log:
      _log(objective, settings, metrics, state, window, window_steps,
           time.time() - window_start, done, last)
      window, window_steps, window_start = None, 0, time.time()
    if save:
      checkpoints.save(done, state, progress)
    objective.after_step(done, state)
    if last:
      if done < end:
        logging.info("%sStopping at step %d: max_seconds=%s reached.", settings.name, done,
                     settings.max_seconds)
      break
    step = done
  return state, progress


def _finite(window: dict) -> bool:
  return bool(np.all(np.isfinite(window["loss"]))) and not window.get("non_finite", 0)


def _restart(objective, state, progress, settings, checkpoints, *, first, done):
  """The non-finite policy: back to the last good checkpoint with half the learning rate."""
  where = f"{settings.name}{objective.non_finite} between steps {first} and {done}"
  restarts = progress.restarts + 1
  if checkpoints.latest_step() is None or restarts > settings.max_restarts:
    tried = (f" and did not recover after {settings.max_restarts} restart(s) from the last "
             "good checkpoint with a halved learning rate" if settings.max_restarts else "")
    raise NonFiniteLossError(
        f"{where}{tried}; the last good checkpoint (step {checkpoints.latest_step()}) is kept.",
        hint=objective.non_finite_hint)
  logging.warning("%s; restarting from the last good checkpoint with half the learning rate "
                  "(restart %d/%d).", where, restarts, settings.max_restarts)
  state, restored = checkpoints.restore(state)
  # The checkpoint's step; the policy's own state goes on (going back does not undo it).
  return state, Progress(restored.step, progress.lr_scale * 0.5, restarts)


def _log(objective, settings, metrics, state, window, steps, elapsed, done, last):
  """The progress line (steps/s, ETA) and a metrics.jsonl record."""
  text, record = objective.report(state, window, steps, done, last)
  rate = steps / max(elapsed, 1e-9)
  eta = (settings.num_steps - done) / rate
  logging.info("%sstep %d/%d  %s  %.2f steps/s  ETA %s", settings.name, done,
               settings.num_steps, text, rate, hms(eta))
  if metrics is not None:
    metrics.append(done, {**record, "steps_per_sec": rate})


def _all_past(deadline: float) -> bool:
  """Whether the wall-clock budget is spent, decided by process 0 for every process (a
  collective checkpoint must happen at the same step everywhere)."""
  past = time.time() > deadline
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    past = bool(multihost_utils.broadcast_one_to_all(np.asarray(past)))
  return past


def hms(seconds: float) -> str:
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
