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

Outputs in the workdir (`basis_jax.training.glow_workdir` owns them): `training_state.npz`
beside every checkpoint (the compact training state, a few MB, committed between sessions:
`init_weights=training_state.npz` continues the run in an empty workdir exactly as the
checkpoint would), `glow_clean.npz` (after stage 0), `sigma_XX.npz` per finished σ,
`glow_sigmas.npz` (all σ stacked, largest σ first), `metrics.jsonl` (bits/dim before and
after each stage on held-out data at that stage's σ) and `train_metrics.jsonl` (training
bits/dim, learning rate and steps/s per log window; `step` counts optimizer steps over all
stages).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from basis_jax.errors import ConfigError, InputFileError
from basis_jax.files import checkpoint_io, sharding
from basis_jax.priors import glow
from basis_jax.sampling import schedules
from basis_jax.training import glow_workdir, optim, training_loop

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
  # Steps of each σ stage, stage 1 (the smallest σ) first; empty: `finetune_steps` for each.
  finetune_steps_per_stage: tuple[int, ...] = ()
  # The last fraction of every stage's steps lowers the rate linearly towards zero (a
  # cool-down; 0: none, the rate stays constant to the stage's end, as openai/glow trains).
  cooldown_fraction: float = 0.0

  def __post_init__(self):
    sigmas = tuple(float(s) for s in self.sigmas)
    if not sigmas or not all(s > 0 for s in sigmas) or len(set(sigmas)) != len(sigmas):
      raise ConfigError(f"sigmas must be distinct positive values, got {self.sigmas}.")
    object.__setattr__(self, "sigmas", sigmas)
    for name in ("batch_size", "train_steps", "finetune_steps", "log_every",
                 "checkpoint_every", "init_batch_size", "eval_batch_size"):
      if getattr(self, name) < 1:
        raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
    per_stage = tuple(self.finetune_steps_per_stage or ())
    if per_stage and len(per_stage) != len(sigmas):
      raise ConfigError(f"train.finetune_steps_per_stage has {len(per_stage)} entries but the "
                        f"σ ladder has {len(sigmas)} (one per σ, the smallest first).")
    if any(int(n) != n or n < 1 for n in per_stage):
      raise ConfigError(f"train.finetune_steps_per_stage must be whole numbers >= 1, got "
                        f"{per_stage}.")
    object.__setattr__(self, "finetune_steps_per_stage", tuple(int(n) for n in per_stage))
    if not 0.0 <= self.cooldown_fraction < 1.0:
      raise ConfigError(f"train.cooldown_fraction must be in [0, 1), got "
                        f"{self.cooldown_fraction}.")
    if self.finetune_params not in glow.PER_SIGMA:
      raise ConfigError(f"train.finetune_params must be one of {glow.PER_SIGMA}, got "
                        f"{self.finetune_params!r}.")
    if self.optimizer.decay_steps:
      raise ConfigError("config.optim.decay_steps must be 0 for Glow: each σ stage warms up "
                        "anew, so its cool-down is set per stage by train.cooldown_fraction.")

  @property
  def ascending_sigmas(self) -> tuple[float, ...]:
    return tuple(sorted(self.sigmas))

  def stage_sigma(self, stage: int) -> float:
    return 0.0 if stage == 0 else self.ascending_sigmas[stage - 1]

  def stage_steps(self, stage: int) -> int:
    if stage == 0:
      return self.train_steps
    if self.finetune_steps_per_stage:
      return self.finetune_steps_per_stage[stage - 1]
    return self.finetune_steps


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


def learning_rate(options: TrainOptions, stage: int, step: int, lr_scale: float) -> float:
  """The rate of `step` (0-based) of `stage`: a linear warm-up over `optim.warmup_steps`
  (each stage warms up anew), then constant; with `train.cooldown_fraction` f > 0, the last
  C = round(f · steps) steps of the stage fall linearly, step k of them (0-based) at
  (C − k)/(C + 1) of it.
  A function of the step alone, so a resumed run follows the same rates."""
  o = options.optimizer
  num_steps = options.stage_steps(stage)
  cooldown = round(options.cooldown_fraction * num_steps)
  cool = min(1.0, (num_steps - step) / (cooldown + 1)) if cooldown else 1.0
  return o.lr * lr_scale * min(1.0, (step + 1) / max(1, o.warmup_steps), cool)


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
  if init_weights and glow_workdir.is_training_state(init_weights):
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
    rest = glow_workdir.restore_fixed_variables(state_file, rest)
  first_stage = 1 if init_weights else 0
  if state_file:
    first_stage = int(checkpoint_io.read_metadata(state_file)["first_stage"])
  num_stages = len(options.sigmas) + 1

  # The stages share one checkpoint directory: a checkpoint's block is its stage, and its
  # progress holds the held-out bits/dim the stage started from (stage_start_bpd).
  opt_init, train_step, eval_bpd = make_steps(graphdef, model_config, options.optimizer)
  opt_state = opt_init(params)
  opt_state_shape = jax.eval_shape(lambda: opt_state)
  checkpoints = training_loop.OrbaxCheckpoints(
      workdir, replicated, block_size=_STAGE_STRIDE,
      after_save=lambda state: glow_workdir.pack_state(
          workdir, model_config, options, first_stage, checkpoints, rest, opt_state_shape))
  progress = {"stage": first_stage, "step": 0, "lr_scale": 1.0, "restarts": 0,
              "stage_start_bpd": 0.0}
  glow_workdir.check_ladder(workdir, options)
  if checkpoints.latest_block() is None and state_file:
    glow_workdir.unpack_state(state_file, workdir, checkpoints, model_config, options, params,
                              opt_state)
  if checkpoints.latest_block() is not None:
    params, opt_state, progress = glow_workdir.restore_latest(checkpoints, params, opt_state)
    logging.info("Resumed from the checkpoint of stage %d, step %d.", progress["stage"],
                 progress["step"])
    for stage in range(1, min(progress["stage"], num_stages)):  # Fail now, not at the end.
      glow_workdir.load_stage(workdir, options, stage)
  # Replicated over the mesh, as the step's outputs are: otherwise the first call after a
  # start or restore compiles again.
  params, rest, opt_state = jax.device_put((params, rest, opt_state), replicated)

  eval_x = eval_images[:options.eval_batch_size]
  eval_key = held_out_key(options.seed)
  steps_left = stop_after_steps
  # Each stage's run takes the budget left (and at least one step, as every run of the loop).
  deadline = time.time() + options.max_seconds if options.max_seconds else None
  metrics = glow_workdir.read_metrics(workdir)
  while progress["stage"] < num_stages:
    stage, sigma = progress["stage"], options.stage_sigma(progress["stage"])
    num_steps = options.stage_steps(stage)
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
    steps_log = training_loop.MetricsLog(
        os.path.join(workdir, glow_workdir.STEPS_FILE),
        offset=sum(options.stage_steps(earlier) for earlier in range(first_stage, stage)))
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
    glow_workdir.save_stage(workdir, stage, model_config,
                            nnx.state(nnx.merge(graphdef, params, rest)), options)
    metrics = [m for m in metrics if m["stage"] != stage] + [record]
    glow_workdir.write_metrics(workdir, metrics)
    progress = {"stage": stage + 1, "step": 0, "lr_scale": 1.0, "restarts": 0,
                "stage_start_bpd": 0.0}
  checkpoints.manager.wait_until_finished()
  glow_workdir.write_stacked(workdir, model_config, options)
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
    self.lr = learning_rate(self.options, self.stage, step, lr_scale)
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


def held_out_key(seed: int) -> jax.Array:
  """The key of every held-out bits/dim measurement of a run of `seed` (one dequantisation
  and noise draw for every stage, so stages and runs compare)."""
  return jax.random.fold_in(jax.random.key(seed), _EVAL_STREAM)
