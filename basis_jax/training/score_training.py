"""Training a score network (any `priors` NETWORK spec) with denoising score matching.

`train_and_evaluate(config, workdir)` runs the training loop every trainer shares
(`basis_jax.training.training_loop`) with DSM as its objective (see configs/train_*.py for the
fields). What makes it resumable bit for bit: the data order of epoch e is a numpy
permutation seeded by (seed, e), the noise of step s comes from fold_in(key(seed), s), and
the orbax checkpoint holds step, params, optimizer state and EMA, so a resumed run feeds
the same compiled step exactly the same inputs. A non-finite loss stops the run (no
restarts: the learning rate is a schedule inside the optimizer state).

Data-parallel: one `jit` over a 1-D device mesh ('batch'); the batch axis is sharded with
NamedSharding, parameters and optimizer state are replicated (no pmap).

Outputs in WORKDIR: checkpoints/ (orbax), weights.npz (compact: params + EMA, read by
`basis_jax.priors.ncsn.load`), metrics.jsonl, samples/step_*.png, config.json.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from basis_jax.files import data as data_lib, sharding

from basis_jax.training import dsm

from basis_jax.sampling import schedules
from basis_jax.training import optim, train_resume, training_loop
from basis_jax import overview
from basis_jax.sampling import sampler
from basis_jax.evaluation import visualize
from basis_jax.errors import ConfigError
from basis_jax import config_help, priors

NonFiniteLossError = training_loop.NonFiniteLossError


# Every field a score-network training config must have (configs/train_ncsn_mnist.py sets
# them all; the σ-conditioned networks add sigmas.num_bands). Checked once, before any work.
REQUIRED_FIELDS = (
    "model.name", "sigmas.sigma_max", "sigmas.sigma_min", "data", "seed",
    "training.batch_size", "training.random_flip", "optim", "ema_rate", "num_steps",
    "max_seconds", "log_every", "checkpoint_every", "max_to_keep", "compact_opt_state",
    "init_weights", "heldout.num_images", "heldout.eval_images", "heldout_every",
    "distributed", "sampling.every", "sampling.num_samples", "sampling.steps_per_level",
    "sampling.step_lr")


def check_config(config) -> None:
  """Refuses a training config that lacks a field, naming each missing one (with the
  optimizer section's own check), before anything is loaded or written."""
  hint = "start from configs/train_ncsn_mnist.py (base_config), which sets every field."
  config_help.require(config, REQUIRED_FIELDS, hint=hint)
  if network(config).conditioning != "level":
    config_help.require(config, ("sigmas.num_bands",), hint=hint)
  optim.settings_from_config(config.optim)


def network(config):
  """The score network `config.model.name` names (its spec: priors/network_spec.py)."""
  return priors.score_network(config.model.name)


def model_config(config):
  return network(config).config_from(config.model)


def noise_of(config):
  """The training noise distribution: the ladder (level-conditioned) or log-uniform σ."""
  s = config.sigmas
  if network(config).conditioning == "level":
    return dsm.LevelNoise(schedules.geometric_sigmas(s.sigma_max, s.sigma_min,
                                                     model_config(config).num_classes))
  if not 0 < s.sigma_min < s.sigma_max:
    raise ConfigError(f"config.sigmas needs 0 < sigma_min < sigma_max, got {s.sigma_min}, "
                      f"{s.sigma_max}.")
  return dsm.LogUniformNoise(float(s.sigma_min), float(s.sigma_max),
                             int(s.num_bands))


def sigmas_of(config) -> tuple[float, ...]:
  """The σ of each loss band (the ladder itself for a level-conditioned network)."""
  return tuple(float(v) for v in noise_of(config).eval_points()[1])


@functools.lru_cache(maxsize=8)
def _train_step(graphdef, make_score_fn, noise, optimizer: optim.OptimizerSettings,
                ema_rate: float, random_flip: bool):
  """The jitted step, cached on its static settings (runs in one process share the compile)."""
  tx = optim.make(optimizer)
  score_fn = make_score_fn(graphdef)

  def step(state, images, key):
    dq_key, flip_key, loss_key = jax.random.split(key, 3)
    x = dsm.dequantize(images, dq_key)
    if random_flip:
      flip = jax.random.bernoulli(flip_key, 0.5, x.shape[:1])
      x = jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)

    def loss_fn(params):
      losses, bands = dsm.dsm_loss(score_fn, params, x, loss_key, noise)
      return jnp.mean(losses), (losses, bands)

    (loss, (losses, bands)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    new_state = {"step": state["step"] + 1, "params": params, "opt_state": opt_state}
    if "ema" in state:
      new_state["ema"] = jax.tree.map(lambda e, p: ema_rate * e + (1.0 - ema_rate) * p,
                                      state["ema"], params)
    sums, counts = dsm.per_level_sums(losses, bands, noise.num_bands)
    return new_state, {"loss": loss, "level_sums": sums, "level_counts": counts,
                       "grad_norm": optax.global_norm(grads)}

  return jax.jit(step, donate_argnums=0)


def train_step(config, graphdef):
  """`config`'s jitted training step: (state, uint8 images, key) -> (state, metrics)."""
  return _train_step(graphdef, network(config).make_score_fn, noise_of(config),
                     optim.settings_from_config(config.optim), float(config.ema_rate),
                     bool(config.training.random_flip))


@functools.lru_cache(maxsize=4)
def _sampler(graphdef, name: str, sigmas, steps_per_level: int, step_lr: float, shape: tuple):
  """Unconditional samples with the separator's own Langevin loop (sampler.py)."""
  score_fn = priors.score_network(name).score_at_levels(graphdef, sigmas)
  schedule = schedules.Schedule(sigmas, steps_per_level, step_lr)
  sample = sampler.make_prior_sampler(score_fn, schedule, shape[1:])
  return jax.jit(lambda params, key: sample(params, key, shape[0]))


@functools.lru_cache(maxsize=4)
def _heldout_loss(graphdef, make_score_fn, conds, sigmas):
  score_fn = make_score_fn(graphdef)
  return jax.jit(lambda params, x, key: dsm.fixed_noise_loss(score_fn, params, x, key,
                                                             conds, sigmas))


def init_state(config, graphdef_and_params=None) -> dict[str, Any]:
  """Step 0 state: fresh weights (seed) or `config.init_weights` (a compact file)."""
  cfg = model_config(config)
  graphdef, params = graphdef_and_params or nnx.split(network(config).build(cfg, config.seed),
                                                      nnx.Param)
  tx = optim.make(optim.settings_from_config(config.optim))
  state = {"step": jnp.zeros((), jnp.int32), "params": params,
           "opt_state": tx.init(params)}
  if config.ema_rate:
    state["ema"] = jax.tree.map(jnp.copy, params)
  if config.init_weights:
    state = train_resume.load_into(config.init_weights, state,
                                   architecture=network(config).architecture,
                                   model_config=model_config(config).to_dict(), seed=config.seed)
  return graphdef, state


def save_compact(path: str, state: dict, config) -> None:
  """weights.npz: params + EMA (+ the optimizer state with `config.compact_opt_state`)."""
  noise = noise_of(config)
  noise_meta = ({"sigmas": list(noise.sigmas)} if isinstance(noise, dsm.LevelNoise)
                else {"sigma_range": [noise.sigma_min, noise.sigma_max]})
  train_resume.save(path, state, architecture=network(config).architecture,
                    model_config=model_config(config).to_dict(), seed=config.seed,
                    noise_meta=noise_meta,
                    include_opt_state=config.compact_opt_state)


def load_images(data_config, image_shape: tuple[int, int, int]) -> np.ndarray:
  """Training images from `config.data` (see `basis_jax.files.data`) as uint8 [N, H, W, C].

  Kept as uint8 (4× smaller than float); `dsm.dequantize` maps pixel u to u/256 + U(0, 1/256).
  """
  images = data_lib.load(data_config).images
  if images.shape[1:] != image_shape:
    raise ConfigError(f"The model expects images of shape {image_shape}, but config.data "
                      f"({data_config.source}, split {data_config.split}) gives "
                      f"{images.shape[1:]}.")
  return np.round(images * 255.0).astype(np.uint8)  # data.load returns u/255 exactly.


def _sampling_ladder(config) -> tuple[float, ...]:
  """The σ of the sample grids: the trained ladder itself, or config.sampling's σs."""
  noise = noise_of(config)
  if isinstance(noise, dsm.LevelNoise):
    return noise.sigmas
  s = config.sampling
  return schedules.geometric_sigmas(s.sigma_max, s.sigma_min, s.num_levels)


def sample_grid(config, graphdef, params, key) -> np.ndarray:
  """`config.sampling`'s unconditional samples [N, H, W, C] from `params` (plain annealed
  Langevin on the sampling ladder): the grid that judges a prior by eye."""
  s = config.sampling
  cfg = model_config(config)
  shape = (s.num_samples, cfg.image_size, cfg.image_size, cfg.channels)
  sample = _sampler(graphdef, config.model.name, _sampling_ladder(config),
                    s.steps_per_level, s.step_lr, shape)
  return np.asarray(sample(params, key))


def write_sample_grid(config, weights: str, path: str, seed: int = 0) -> None:
  """`sample_grid` of a weights file (shipped, exported or a training state; EMA where it has
  them) of `config`'s network, as a PNG. Weights of another shape are refused by name."""
  cfg = model_config(config)
  expected = {"channels": cfg.channels, "image_size": cfg.image_size}
  _, graphdef, params, _ = network(config).load_weights(weights, expected, use_ema=True)
  _save_grid(path, sample_grid(config, graphdef, params, jax.random.key(seed)))


def _save_grid(path: str, x: np.ndarray) -> None:
  visualize.save_png(path, visualize.image_grid(x), scale=2)


def _write_samples(config, graphdef, state, workdir, step) -> None:
  """The training run's grid of step `step` (EMA weights), in WORKDIR/samples/."""
  key = jax.random.fold_in(jax.random.key(config.seed + 1), step)
  x = sample_grid(config, graphdef, state.get("ema", state["params"]), key)
  if jax.process_index() == 0:
    path = os.path.join(workdir, "samples", f"step_{step:07d}.png")
    _save_grid(path, x)
    logging.info("Wrote %s", path)


def _split_heldout(images: np.ndarray, config) -> tuple[np.ndarray, np.ndarray | None]:
  """The last `heldout.num_images` training images are never trained on: settings are
  chosen on their losses (and separations), never on the test set."""
  n = int(config.heldout.num_images)
  if n <= 0:
    return images, None
  if n >= len(images):
    raise ConfigError(f"heldout.num_images={n} leaves no training images (of {len(images)}).")
  return images[:-n], images[-n:]


class _HeldoutLoss:
  """Held-out DSM loss at each band's σ, with fixed images, dequantisation and noise, for
  the raw and the EMA weights."""

  def __init__(self, config, graphdef, images: np.ndarray):
    noise = noise_of(config)
    conds, self.sigmas = noise.eval_points()
    self.fn = _heldout_loss(graphdef, network(config).make_score_fn,
                            tuple(conds.tolist()), tuple(self.sigmas.tolist()))
    key = jax.random.key(config.seed + 2)
    x = images[:config.heldout.eval_images]
    self.x = dsm.dequantize(jnp.asarray(x), jax.random.fold_in(key, 0))
    self.key = jax.random.fold_in(key, 1)

  def __call__(self, state) -> dict[str, list[float]]:
    out = {"heldout_sigmas": [float(v) for v in self.sigmas]}
    for name in ("params", "ema"):
      if name in state:
        losses = np.asarray(jax.device_get(self.fn(state[name], self.x, self.key)))
        out["heldout_loss" + ("_ema" if name == "ema" else "")] = [float(v) for v in losses]
    return out


class _ScoreMatching(training_loop.Objective):
  """Denoising score matching as the training loop's objective."""

  non_finite = "The training loss became non-finite"
  non_finite_hint = ("resume with a lower config.optim.lr or a config.optim.grad_clip "
                     "(and --allow_config_change).")

  def __init__(self, config, graphdef, batches: training_loop.MeshBatches,
               heldout: _HeldoutLoss | None, workdir: str):
    self.config, self.graphdef, self.batches, self.workdir = config, graphdef, batches, workdir
    self.step_fn = train_step(config, graphdef)
    self.key = jax.random.key(config.seed)
    self.rate = optim.learning_rate(optim.settings_from_config(config.optim))
    self.heldout = heldout

  def step(self, state, step: int, lr_scale: float):
    del lr_scale  # 1: no restarts (the learning rate is a schedule inside the optimizer).
    return self.step_fn(state, self.batches(step), training_loop.step_key(self.key, step))

  def report(self, state, window, steps: int, done: int, last: bool):
    counts = window["level_counts"]
    per_level = np.where(counts > 0, window["level_sums"] / np.maximum(counts, 1), np.nan)
    loss = float(window["loss"]) / steps
    record = {"loss": loss, "grad_norm": float(window["grad_norm"]) / steps,
              "loss_per_level": [None if np.isnan(v) else float(v) for v in per_level],
              # The learning rate of this window's last update.
              "lr": float(self.rate(done - 1)) if callable(self.rate) else self.rate}
    every = int(self.config.heldout_every)
    if self.heldout is not None and (done % every == 0 or last):
      record.update(self.heldout(state))
      ema = record.get("heldout_loss_ema")
      logging.info("held-out loss per band: %s%s", _numbers(record["heldout_loss"]),
                   "" if ema is None else f"  (EMA: {_numbers(ema)})")
    return f"loss {loss:.4f}  per band: {_numbers(per_level)}", record

  def after_step(self, done: int, state) -> None:
    if self.config.sampling.every and done % self.config.sampling.every == 0:
      _write_samples(self.config, self.graphdef, state, self.workdir, done)


def _numbers(values) -> str:
  return " ".join(f"{v:.3g}" for v in values)


def train_and_evaluate(config, workdir: str, stop_after: int | None = None, *,
                       allow_config_change: bool = False) -> dict[str, Any]:
  """Trains until `config.num_steps` (or `stop_after` more steps); returns the final state.

  Resumes from the latest orbax checkpoint in WORKDIR/checkpoints if there is one (the
  saved config must agree on every key that changes the training, unless
  `allow_config_change`). A non-finite loss stops the run with `NonFiniteLossError` before
  anything after the last good checkpoint is saved.
  """
  check_config(config)
  sharding.initialize_distributed(config.distributed)
  os.makedirs(workdir, exist_ok=True)
  cfg = model_config(config)
  noise_of(config)  # Refuses a bad config.sigmas before the data is read.
  batch_size = config.training.batch_size
  mesh = sharding.make_mesh()
  training_loop.check_batch_size(batch_size, mesh, "training.batch_size")
  if config.checkpoint_every and config.log_every and config.checkpoint_every % config.log_every:
    raise ConfigError(f"checkpoint_every ({config.checkpoint_every}) must be a multiple of "
                      f"log_every ({config.log_every}): the loss is checked before each save.")
  replicated = sharding.replicated(mesh)
  train_resume.record_config(config, workdir, allow_config_change=allow_config_change)

  images, heldout_images = _split_heldout(
      load_images(config.data, (cfg.image_size, cfg.image_size, cfg.channels)), config)
  if len(images) < batch_size:
    raise ConfigError(f"The dataset has {len(images)} images, fewer than one batch "
                      f"({batch_size}).")
  batches = training_loop.MeshBatches(images, batch_size, (config.seed,), mesh)
  logging.info("Training on %d images (%s), batch %d over %d devices, %d steps/epoch%s.",
               len(images), config.data.source, batch_size, jax.device_count(),
               batches.order.steps_per_epoch,
               "" if heldout_images is None else f", {len(heldout_images)} held out")

  graphdef, state = init_state(config)
  state = jax.device_put(state, replicated)
  checkpoints = training_loop.OrbaxCheckpoints(
      workdir, replicated, max_to_keep=config.max_to_keep,
      after_save=lambda state: save_compact(os.path.join(workdir, "weights.npz"), state, config))
  try:
    progress = training_loop.Progress(int(state["step"]))
    if checkpoints.latest_step() is not None:
      state, progress = checkpoints.restore(state)
      logging.info("Resumed from step %d.", progress.step)
    overview.log_parameter_overview(state["params"], network(config).architecture)
    heldout_every = int(config.heldout_every) if heldout_images is not None else 0
    heldout = _HeldoutLoss(config, graphdef, heldout_images) if heldout_every else None
    metrics = training_loop.MetricsLog(os.path.join(workdir, "metrics.jsonl"))
    metrics.truncate(int(state["step"]))
    # max_seconds: runs on leased machines end hard; stop early, checkpoint first.
    settings = training_loop.LoopSettings(
        num_steps=config.num_steps, log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        max_seconds=float(config.max_seconds or 0))
    state, _ = training_loop.run(_ScoreMatching(config, graphdef, batches, heldout, workdir),
                                 state, progress, settings,
                                 checkpoints, metrics, stop_after=stop_after)
  finally:
    checkpoints.close()
  return state
