"""Training Glow, then fine-tuning it on noisy data x + N(0, σ²) for every σ of a ladder.

The run is a sequence of stages: stage 0 trains the clean model (σ = 0) from scratch
(skipped when an initial weights file is given); stage s ≥ 1 fine-tunes on σ_s, taking the
σ in ascending order and starting each from the previous stage's parameters, as the BASIS
appendix does (the large-σ models would otherwise collapse to non-invertible maps). Each
stage has a fresh Adamax state with a linear learning-rate warm-up.

Each stage is one run of the loop every trainer shares (`basis_jax.training.training_loop`), with
the negative log-likelihood of noisy data as its objective and (seed, stage) as its random
stream: the batch order, the dequantisation noise and the σ noise are functions of (seed,
stage, step), so an Orbax checkpoint of (stage, step, params, optimizer state,
learning-rate scale) resumes exactly. A non-finite loss or gradient (Glow lost
invertibility) is not applied; the loop goes back to the last good checkpoint with half the
learning rate, up to `max_restarts` times, then stops with a user error. Data-parallel as
the loop is: the batch sharded over all devices (batch_size must divide), parameters
replicated; more than one device changes the weights only by float rounding.

Outputs in the workdir: `training_state.npz` beside every checkpoint (the compact training
state: the current stage's parameters, Adamax state and progress, every finished stage's
parameters and the held-out records; a few MB, committed between sessions, and
`init_weights=training_state.npz` continues the run in an empty workdir exactly as the
checkpoint would), `glow_clean.npz` (after stage 0), `sigma_XX.npz` per finished σ,
`glow_sigmas.npz` (all σ stacked on a leading axis, largest σ first, as
`basis_jax.priors.glow.load` expects), `metrics.jsonl` (bits/dim before and after each
stage on held-out data at that stage's σ) and `train_metrics.jsonl` (training bits/dim,
learning rate and steps/s per log window; `step` counts optimizer steps over all stages).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from basis_jax.files import atomic, checkpoint_io, sharding

from basis_jax import errors

from basis_jax.sampling import schedules

from basis_jax.training import optim, training_loop
from basis_jax.errors import ConfigError, InputFileError
from basis_jax.priors import glow

CLEAN_FILE = "glow_clean.npz"
STACKED_FILE = "glow_sigmas.npz"
LADDER_FILE = "sigmas.json"  # The ascending ladder the workdir is trained for.
STEPS_FILE = "train_metrics.jsonl"  # One record per log window (the loop's MetricsLog).
STATE_FILE = "training_state.npz"  # The compact training state, rewritten at each checkpoint.
# Config keys a resumed run may change (experiments/train_glow.py): they change neither
# the weights nor the metrics. (allow_config_change: see train_resume.RESUME_INVARIANT_KEYS.)
RESUME_INVARIANT_KEYS = ("train.log_every", "train.checkpoint_every", "train.max_restarts",
                         "train.max_seconds", "allow_config_change")
_STAGE_STRIDE = 10**7  # Checkpoint number = stage · stride + step.
# Random streams besides the stages' (which use the stage index 0..L).
_INIT_STREAM, _EVAL_STREAM = 10_000, 10_001


# Training produced a non-finite loss or gradient and did not recover: a user error (the fix
# is a setting), raised by the shared loop's non-finite policy.
InvertibilityError = training_loop.NonFiniteLossError


@dataclasses.dataclass(frozen=True)
class TrainOptions:
  """Static settings of a training run (`options_from_config`: `config.train`, the σ ladder
  and `config.optim`; the defaults are in configs/train_glow_mnist.py)."""

  sigmas: tuple[float, ...]  # The separation ladder (any order; trained ascending).
  optimizer: optim.OptimizerSettings  # Adamax; lr and warmup_steps per stage (`learning_rate`).
  batch_size: int
  train_steps: int  # Stage 0 (clean); ignored with initial weights.
  finetune_steps: int  # Per σ.
  seed: int
  init_batch_size: int  # Data-dependent actnorm initialisation.
  eval_batch_size: int
  log_every: int
  checkpoint_every: int
  max_restarts: int
  max_seconds: float  # Wall-clock budget of one call (0: none): checkpoint, then stop.
  # What each σ stage fine-tunes: 'all' parameters (BASIS), or only the 'modulation'
  # parameters (`glow.is_modulation_parameter`), the rest staying the clean model's, shared
  # by every σ and stored once in glow_sigmas.npz.
  finetune_params: str = "all"

  def __post_init__(self):
    sigmas = tuple(float(s) for s in self.sigmas)
    if not sigmas or not all(s > 0 for s in sigmas) or len(set(sigmas)) != len(sigmas):
      raise ConfigError(f"sigmas must be distinct positive values, got {self.sigmas}.")
    object.__setattr__(self, "sigmas", sigmas)
    for name in ("batch_size", "train_steps", "finetune_steps", "log_every",
                 "checkpoint_every", "init_batch_size", "eval_batch_size"):
      if getattr(self, name) < 1:
        raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
    if self.finetune_params not in glow.PER_SIGMA:
      raise ConfigError(f"train.finetune_params must be one of {glow.PER_SIGMA}, got "
                        f"{self.finetune_params!r}.")
    if self.optimizer.decay_steps:
      raise ConfigError("config.optim.decay_steps must be 0 for Glow: each σ stage warms up "
                        "and then trains at a constant rate.")

  @property
  def ascending_sigmas(self) -> tuple[float, ...]:
    return tuple(sorted(self.sigmas))


TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainOptions)
                     if f.name not in ("sigmas", "optimizer"))


def options_from_config(config) -> TrainOptions:
  """TrainOptions from `config.train` (every field of TRAIN_FIELDS; a missing one is refused
  by name), `config.optim` and the σ ladder of `config.schedule` (`sigmas`, or `sigma_max`,
  `sigma_min`, `num_levels` as in a separation config)."""
  t, s = config.train, config.schedule
  missing = [name for name in TRAIN_FIELDS if name not in t]
  if missing:
    raise ConfigError(f"config.train has no field(s) {missing}.",
                      hint="start from configs/train_glow_mnist.py, which sets them all.")
  sigmas = tuple(s.sigmas) or schedules.geometric_sigmas(s.sigma_max, s.sigma_min,
                                                         s.num_levels)
  return TrainOptions(sigmas=sigmas, optimizer=optim.settings_from_config(config.optim),
                      **{name: t[name] for name in TRAIN_FIELDS})


def _stage_sigma(options: TrainOptions, stage: int) -> float:
  return 0.0 if stage == 0 else options.ascending_sigmas[stage - 1]


def _stage_steps(options: TrainOptions, stage: int) -> int:
  return options.train_steps if stage == 0 else options.finetune_steps


def learning_rate(options: TrainOptions, step: int, lr_scale: float) -> float:
  """Linear warm-up over `optim.warmup_steps`, then constant (each stage warms up anew)."""
  o = options.optimizer
  return o.lr * lr_scale * min(1.0, (step + 1) / max(1, o.warmup_steps))


@functools.lru_cache(maxsize=4)
def make_steps(graphdef, config: glow.GlowConfig, optimizer: optim.OptimizerSettings):
  """(jitted optimizer init, jitted train_step, jitted eval_bpd); σ and the learning rate are traced
  arguments, so one compilation serves every stage (and every run of the same model): the
  rate is an input of every step (`optim.make(..., rate_per_step=True)`), so warm-up,
  restarts with a lower rate and all stages share one compiled step."""
  tx = optim.make(optimizer, rate_per_step=True)

  def noisy(images, key, sigma):
    k_deq, k_noise = jax.random.split(key)
    x = glow.dequantize(images, k_deq, config.n_bits)
    return x + sigma * jax.random.normal(k_noise, x.shape)

  def mean_bpd(params, rest, x):
    log_prob = nnx.merge(graphdef, params, rest)(x)
    return jnp.mean(glow.log_prob_to_bits_per_dim(log_prob, config))

  @jax.jit
  def train_step(params, rest, opt_state, images, key, sigma, lr, trainable):
    """`trainable`: a 0/1 scalar per parameter (traced: one compilation for every stage);
    a parameter with 0 is not changed, weight decay included."""
    loss, grads = jax.value_and_grad(mean_bpd)(params, rest, noisy(images, key, sigma))
    opt_state = optim.set_rate(opt_state, lr)
    finite = jnp.isfinite(loss) & jnp.all(jnp.array(
        [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    updates, new_opt_state = tx.update(grads, opt_state, params)
    updates = jax.tree.map(lambda u, t: u * t.astype(u.dtype), updates, trainable)
    new_params = optax.apply_updates(params, updates)
    # A non-finite step is not applied; the host restarts from the last checkpoint.
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    return keep(new_params, params), keep(new_opt_state, opt_state), loss, finite

  @jax.jit
  def eval_bpd(params, rest, images, key, sigma):
    return mean_bpd(params, rest, noisy(images, key, sigma))

  # Jitted too: eagerly, each parameter shape would compile its own zeros.
  return jax.jit(tx.init), train_step, eval_bpd


def _save_state_file(path, graphdef, config, params, rest, **metadata):
  _, state = nnx.split(nnx.merge(graphdef, params, rest))
  glow.save_weights(path, config, state, **metadata)


def train(model_config: glow.GlowConfig, options: TrainOptions, train_images: np.ndarray,
          eval_images: np.ndarray, workdir: str, init_weights: str | None = None,
          stop_after_steps: int | None = None, grow_from: str | None = None) -> dict[str, Any]:
  """Runs (or resumes) every stage; returns {'sigmas', 'metrics'}.

  `init_weights`: a clean model of `model_config` (the clean stage is skipped) or a compact
  training state (the run continues from it). `grow_from`: a trained clean model of a
  smaller width (every other field equal), widened without changing its density
  (`glow.widen`); the clean stage then continues training from it.

  Images are [N, H, W, C] in [0, 1] (8-bit values). `stop_after_steps` ends the call
  after that many optimizer steps in this call (for tests of resumption); the result then
  has 'stopped': True.
  """
  _check_images(train_images, model_config, "train_images")
  _check_images(eval_images, model_config, "eval_images")
  mesh = sharding.make_mesh()
  training_loop.check_batch_size(options.batch_size, mesh, "train.batch_size")
  replicated = sharding.replicated(mesh)
  os.makedirs(workdir, exist_ok=True)
  key = jax.random.key(options.seed)
  state_file = None
  if init_weights and is_training_state(init_weights):
    # A compact training state: the run continues from it (the clean file is not needed).
    state_file, init_weights = init_weights, None
  if init_weights and grow_from:
    raise ConfigError("Set init_weights or grow_from, not both.")
  if init_weights:
    weights = glow.load_weights(init_weights)
    if weights.config != model_config or weights.sigmas is not None:
      raise InputFileError(f"{init_weights} holds {weights.config} "
                           f"({'per-σ' if weights.sigmas else 'one model'}); expected one clean "
                           f"model of {model_config}.")
    model = nnx.merge(weights.graphdef, weights.state)
  else:
    init_order = training_loop.BatchOrder(len(train_images), options.init_batch_size,
                                          stream=(options.seed, _INIT_STREAM))
    init_x = glow.dequantize(train_images[init_order(0)],
                             jax.random.fold_in(key, _INIT_STREAM), model_config.n_bits)
    model = glow.create(model_config, seed=options.seed, init_batch=init_x)
    if grow_from:
      narrow = glow.load_weights(grow_from)
      if narrow.sigmas is not None:
        raise InputFileError(f"{grow_from} holds per-σ models; grow_from takes one clean "
                             "model.")
      try:
        graphdef, state = nnx.split(model)
        model = nnx.merge(graphdef, glow.widen(narrow.state, narrow.config, state,
                                               model_config))
      except ValueError as e:
        raise InputFileError(f"{grow_from}: {e}") from None
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  if state_file:
    rest = _restore_fixed_variables(state_file, rest)
  first_stage = 1 if init_weights else 0
  if state_file:
    first_stage = int(checkpoint_io.read_metadata(state_file)["first_stage"])
  num_stages = len(options.sigmas) + 1

  # The stages share one checkpoint directory: a checkpoint's block is its stage, and its
  # progress holds the held-out bits/dim the stage started from (stage_start_bpd).
  checkpoints = training_loop.OrbaxCheckpoints(
      workdir, replicated, block_size=_STAGE_STRIDE,
      after_save=lambda state: _pack_state(workdir, model_config, options, first_stage,
                                           checkpoints, rest))
  progress = {"stage": first_stage, "step": 0, "lr_scale": 1.0, "restarts": 0,
              "stage_start_bpd": 0.0}
  opt_init, train_step, eval_bpd = make_steps(graphdef, model_config, options.optimizer)
  opt_state = opt_init(params)
  _check_ladder(workdir, options)
  if checkpoints.latest_block() is None and state_file:
    _unpack_state(state_file, workdir, checkpoints, model_config, options, params, opt_state)
  if checkpoints.latest_block() is not None:
    params, opt_state, progress = _restore_latest(checkpoints, params, opt_state)
    logging.info("Resumed from the checkpoint of stage %d, step %d.", progress["stage"],
                 progress["step"])
    for stage in range(1, min(progress["stage"], num_stages)):  # Fail now, not at the end.
      _load_stage_file(workdir, options, stage)
  # Replicated over the mesh, as the step's outputs are: otherwise the first call after a
  # start or restore compiles again.
  params, rest, opt_state = jax.device_put((params, rest, opt_state), replicated)

  eval_x = eval_images[:options.eval_batch_size]
  eval_key = held_out_key(options.seed)
  steps_left = stop_after_steps
  # Each stage's run takes the budget left (and at least one step, as every run of the loop).
  deadline = time.time() + options.max_seconds if options.max_seconds else None
  metrics = _read_metrics(workdir)
  while progress["stage"] < num_stages:
    stage, sigma = progress["stage"], _stage_sigma(options, progress["stage"])
    num_steps = _stage_steps(options, stage)
    name = "clean" if stage == 0 else f"σ={sigma:.4g} ({stage}/{num_stages - 1})"
    if steps_left is not None and steps_left <= 0:
      checkpoints.manager.wait_until_finished()
      return {"stopped": True, "metrics": metrics}
    checkpoints.block = stage
    checkpoints.extra = {"stage_start_bpd": progress["stage_start_bpd"]}
    if progress["step"] == 0 and checkpoints.latest_step() != 0:
      opt_state = jax.device_put(opt_init(params), replicated)
      progress["stage_start_bpd"] = float(eval_bpd(params, rest, eval_x, eval_key, sigma))
      checkpoints.extra = {"stage_start_bpd": progress["stage_start_bpd"]}
      checkpoints.save(0, {"params": params, "opt_state": opt_state}, training_loop.Progress(0))
    # One run of the shared loop per stage: its batches, noise and checkpoints are the stage's.
    batches = training_loop.MeshBatches(train_images, options.batch_size,
                                        (options.seed, stage), mesh)
    objective = _NoisyLikelihood(train_step, rest, batches, options, stage, sigma,
                                 jax.random.fold_in(key, stage),
                                 trainable_mask(params, options, stage))
    # Records numbered by optimizer steps over all stages, so the file stays in order.
    steps_log = training_loop.MetricsLog(os.path.join(workdir, STEPS_FILE), offset=sum(
        _stage_steps(options, earlier) for earlier in range(first_stage, stage)))
    settings = training_loop.LoopSettings(
        num_steps=num_steps, log_every=options.log_every,
        checkpoint_every=options.checkpoint_every, max_restarts=options.max_restarts,
        max_seconds=max(deadline - time.time(), 1e-9) if deadline else 0.0, name=f"[{name}] ")
    start = progress["step"]
    steps_log.truncate(start)
    state, done = training_loop.run(
        objective, {"params": params, "opt_state": opt_state},
        training_loop.Progress(start, progress["lr_scale"], progress["restarts"]), settings,
        checkpoints, steps_log, stop_after=steps_left)
    params, opt_state = state["params"], state["opt_state"]
    progress.update(step=done.step, lr_scale=done.lr_scale, restarts=done.restarts)
    if steps_left is not None:
      steps_left -= done.step - start
    if done.step < num_steps:
      checkpoints.manager.wait_until_finished()
      return {"stopped": True, "metrics": metrics}
    before = progress["stage_start_bpd"]
    after = float(eval_bpd(params, rest, eval_x, eval_key, sigma))
    record = {"stage": stage, "sigma": sigma, "steps": num_steps, "bpd_before": before,
              "bpd_after": after, "lr_scale": progress["lr_scale"]}
    logging.info("[%s] done: held-out bits/dim %.4f -> %.4f", name, before, after)
    stage_file = os.path.join(workdir, CLEAN_FILE if stage == 0 else f"sigma_{stage:02d}.npz")
    _save_state_file(stage_file, graphdef, model_config, params, rest, stage_sigma=sigma)
    metrics = [m for m in metrics if m["stage"] != stage] + [record]
    with atomic.atomic_open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
      f.writelines(json.dumps(m) + "\n" for m in metrics)
    progress = {"stage": stage + 1, "step": 0, "lr_scale": 1.0, "restarts": 0,
                "stage_start_bpd": 0.0}
  checkpoints.manager.wait_until_finished()
  _write_stacked(workdir, model_config, options)
  return {"stopped": False, "metrics": metrics, "sigmas": options.ascending_sigmas}


def trainable_mask(params, options: TrainOptions, stage: int):
  """1 for the parameters `stage` trains, 0 for the others (a float32 scalar per parameter):
  the clean stage trains everything, a σ stage what `options.finetune_params` names."""
  if stage == 0 or options.finetune_params == "all":
    return jax.tree.map(lambda _: np.float32(1.0), params)
  return jax.tree.map(np.float32, glow.modulation_mask(params))


class _NoisyLikelihood(training_loop.Objective):
  """Glow's objective for one stage: mean bits/dim of dequantised images plus N(0, σ²), the
  stage's batches and keys drawn from the (seed, stage) stream."""

  non_finite = "Glow lost invertibility (non-finite loss or gradient)"
  non_finite_hint = ("lower optim.lr, lengthen optim.warmup_steps, or fine-tune "
                     "with smaller σ steps.")

  def __init__(self, train_step, rest, batches: training_loop.MeshBatches,
               options: TrainOptions, stage: int, sigma: float, stage_key, trainable):
    self.train_step, self.rest, self.batches, self.options = train_step, rest, batches, options
    self.trainable = trainable
    self.stage, self.sigma, self.key, self.lr = stage, sigma, stage_key, 0.0

  def step(self, state, step: int, lr_scale: float):
    self.lr = learning_rate(self.options, step, lr_scale)
    params, opt_state, loss, finite = self.train_step(
        state["params"], self.rest, state["opt_state"], self.batches(step),
        training_loop.step_key(self.key, step), self.sigma, self.lr, self.trainable)
    return ({"params": params, "opt_state": opt_state},
            {"loss": loss, "non_finite": jnp.logical_not(finite).astype(jnp.int32)})

  def report(self, state, window, steps: int, done: int, last: bool):
    del state, done, last
    bpd = float(window["loss"]) / steps
    return (f"bits/dim {bpd:.4f}  lr {self.lr:.2e}",
            {"stage": self.stage, "sigma": self.sigma, "bits_per_dim": bpd, "lr": self.lr})


def _check_images(images, config, name):
  if images.ndim != 4 or tuple(images.shape[1:]) != config.image_shape:
    raise ConfigError(f"{name} must be [N, {', '.join(map(str, config.image_shape))}], "
                      f"got {images.shape}.")
  if len(images) == 0:
    raise ConfigError(f"{name} is empty.")


def _check_ladder(workdir, options):
  """Records the σ ladder of the workdir's first run and refuses to resume under another.

  A checkpoint taken mid-stage would otherwise continue (and label) the stage at a new σ.
  """
  path = os.path.join(workdir, LADDER_FILE)
  current = list(options.ascending_sigmas)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)["sigmas"]
    if len(saved) != len(current) or not np.allclose(saved, current, rtol=1e-6, atol=0):
      raise errors.ConfigError(
          f"{workdir} was trained with the σ ladder {tuple(saved)}, but this run asks for "
          f"{tuple(current)}.", hint="Resume with the same ladder, or use a new workdir.")
  else:
    atomic.write_json(path, {"sigmas": current})


def _load_stage_file(workdir, options, stage):
  """A finished stage's weights, refused unless it was trained at this run's σ for the stage.

  A resumed run with another ladder would otherwise label old files with new σ values,
  which `glow.load`'s σ check then accepts.
  """
  path = os.path.join(workdir, f"sigma_{stage:02d}.npz")
  weights = glow.load_weights(path)
  stored, expected = weights.metadata.get("stage_sigma"), _stage_sigma(options, stage)
  if stored is None or not np.isclose(float(stored), expected, rtol=1e-6, atol=0):
    raise errors.ConfigError(
        f"{path} was fine-tuned at σ = {stored}, but this run's ladder "
        f"{options.ascending_sigmas} puts σ = {expected:.6g} at stage {stage}.",
        hint="Resume with the ladder the workdir was trained with, or use a new workdir.")
  return weights


def _write_stacked(workdir, config, options):
  """All σ stacked, largest σ first (the sampler's level order)."""
  states, sigmas = [], []
  for stage in range(len(options.sigmas), 0, -1):
    weights = _load_stage_file(workdir, options, stage)
    states.append(weights.state)
    sigmas.append(float(weights.metadata["stage_sigma"]))
  shared = None
  if options.finetune_params == "modulation":  # The rest is the clean model's: stored once.
    shared = jax.tree.map(lambda m: not m, glow.modulation_mask(states[0]))
  glow.save_weights(os.path.join(workdir, STACKED_FILE), config,
                    glow.stack_states(states, shared), sigmas=sigmas,
                    per_sigma=options.finetune_params)


def _restore_latest(checkpoints, params, opt_state):
  """(params, opt_state, progress dict) of the directory's latest checkpoint (any stage)."""
  checkpoints.block = checkpoints.latest_block()
  checkpoints.extra = {"stage_start_bpd": 0.0}  # The structure of the saved progress.
  state, done = checkpoints.restore({"params": params, "opt_state": opt_state})
  progress = {"stage": checkpoints.block, "step": done.step, "lr_scale": done.lr_scale,
              "restarts": done.restarts,
              "stage_start_bpd": float(checkpoints.restored_extra["stage_start_bpd"])}
  return state["params"], state["opt_state"], progress


def _read_metrics(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


# -- the compact training state ------------------------------------------------------------


def is_training_state(path: str) -> bool:
  """Whether `path` is a compact Glow training state (not a weights file)."""
  return bool(checkpoint_io.read_metadata(path).get("glow_training_state"))


def held_out_key(seed: int) -> jax.Array:
  """The key of every held-out bits/dim measurement of a run of `seed` (one dequantisation
  and noise draw for every stage, so stages and runs compare)."""
  return jax.random.fold_in(jax.random.key(seed), _EVAL_STREAM)


def model_from_state(path: str) -> tuple[glow.GlowConfig, glow.Glow]:
  """The model a compact training state is training, with its current parameters and its
  fixed variables (e.g. an LU model's permutation): to measure a run mid-stage."""
  if not is_training_state(path):
    raise InputFileError(f"{path} is not a compact Glow training state.")
  model_config = glow.config_from_json(checkpoint_io.read_metadata(path)["glow_config"])
  graphdef, params, rest = nnx.split(glow.Glow(model_config), nnx.Param, ...)
  tree, _ = checkpoint_io.load_params(path, {"params": nnx.to_pure_dict(params)},
                                      allow_unexpected=True)
  nnx.replace_by_pure_dict(params, tree["params"])
  return model_config, nnx.merge(graphdef, params, _restore_fixed_variables(path, rest))


def _pack_state(workdir, model_config, options, first_stage, checkpoints, fixed) -> None:
  """Writes STATE_FILE from the workdir's latest checkpoint and its finished stage files
  (read back from disk, so the file holds exactly what a resume would restore), with the
  model's fixed (non-trained) variables `fixed`: e.g. an LU model's permutation, which a
  `grow_from` run takes from the narrow model, not from its own seed."""
  if checkpoints.latest_block() is None or jax.process_index() != 0:
    return
  graphdef, params, _ = nnx.split(nnx.eval_shape(lambda: glow.Glow(model_config)),
                                  nnx.Param, ...)
  opt_init, _, _ = make_steps(graphdef, model_config, options.optimizer)
  block, extra = checkpoints.block, checkpoints.extra
  params, opt_state, progress = _restore_latest(checkpoints, params,
                                                jax.eval_shape(opt_init, params))
  checkpoints.block, checkpoints.extra = block, extra
  tree = {"params": nnx.to_pure_dict(params), "opt_state": opt_state, "stages": {
      f"{stage:02d}": nnx.to_pure_dict(_load_stage_file(workdir, options, stage).state)
      for stage in range(1, progress["stage"])}}
  if jax.tree.leaves(fixed):
    tree["fixed"] = jax.tree.map(np.asarray, nnx.to_pure_dict(fixed))
  metadata = {"architecture": "glow", "glow_training_state": True,
              "glow_config": glow.config_to_json(model_config), "progress": progress,
              "first_stage": first_stage, "sigmas": list(options.ascending_sigmas),
              "seed": options.seed, "metrics": _read_metrics(workdir)}
  checkpoint_io.save_params(os.path.join(workdir, STATE_FILE), tree, metadata, compress=True)


def _has_fixed_variables(path) -> bool:
  return any(key.startswith("fixed/") for key in checkpoint_io.list_keys(path))


def _restore_fixed_variables(path, rest):
  """`rest` (the model's fixed variables) with the values a training state holds; a state
  without them (none to hold, or written before they were stored) leaves `rest` as it is."""
  if not jax.tree.leaves(rest) or not _has_fixed_variables(path):
    return rest
  tree, _ = checkpoint_io.load_params(path, {"fixed": nnx.to_pure_dict(rest)},
                                      allow_unexpected=True)
  nnx.replace_by_pure_dict(rest, tree["fixed"])
  return rest


def _unpack_state(path, workdir, checkpoints, model_config, options, params,
                  opt_state) -> None:
  """Turns a compact training state into the workdir's first checkpoint, its finished stage
  files and metrics, so the run continues exactly where the state was written."""
  metadata = checkpoint_io.read_metadata(path)
  if metadata.get("glow_config") != glow.config_to_json(model_config):
    raise errors.ConfigError(f"{path} is a training state of the Glow "
                             f"{metadata.get('glow_config')}, but config.model builds "
                             f"{glow.config_to_json(model_config)}.")
  saved = metadata["sigmas"]
  if len(saved) != len(options.sigmas) or not np.allclose(saved, options.ascending_sigmas,
                                                          rtol=1e-6, atol=0):
    raise errors.ConfigError(f"{path} was trained with the σ ladder {tuple(saved)}, but this "
                             f"run asks for {options.ascending_sigmas}.")
  if metadata.get("seed") != options.seed:
    raise errors.ConfigError(f"{path} is a training state of seed {metadata.get('seed')}, but "
                             f"config.train.seed={options.seed}: the data order would not "
                             "continue.")
  progress = metadata["progress"]
  full_state = nnx.state(nnx.eval_shape(lambda: glow.Glow(model_config)))
  stages = {f"{stage:02d}": nnx.to_pure_dict(full_state)
            for stage in range(1, progress["stage"])}
  abstract = jax.eval_shape(lambda: {"params": nnx.to_pure_dict(params),
                                     "opt_state": opt_state, "stages": stages})
  if _has_fixed_variables(path):  # Read in train() (`_restore_fixed_variables`).
    abstract["fixed"] = nnx.to_pure_dict(
        nnx.split(nnx.eval_shape(lambda: glow.Glow(model_config)), nnx.Param, ...)[2])
  tree, _ = checkpoint_io.load_params(path, abstract)
  for stage, values in tree["stages"].items():
    state = nnx.state(glow.Glow(model_config))
    nnx.replace_by_pure_dict(state, values)
    glow.save_weights(os.path.join(workdir, f"sigma_{stage}.npz"), model_config, state,
                      stage_sigma=_stage_sigma(options, int(stage)))
  nnx.replace_by_pure_dict(params, tree["params"])
  with atomic.atomic_open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(m) + "\n" for m in metadata.get("metrics", []))
  checkpoints.block = int(progress["stage"])
  checkpoints.extra = {"stage_start_bpd": float(progress["stage_start_bpd"])}
  checkpoints.save(int(progress["step"]), {"params": params, "opt_state": tree["opt_state"]},
                   training_loop.Progress(int(progress["step"]), float(progress["lr_scale"]),
                                          int(progress["restarts"])))
  logging.info("Continuing from the training state %s: stage %d, step %d.", path,
               progress["stage"], progress["step"])
