"""Training the CIFAR-10 classifier of `basis_jax.evaluation.classifier`
(configs/train_classifier_cifar10.py): cross-entropy as an objective of the project's one
training loop (`basis_jax.training.training_loop`).

`train(config, workdir)` trains to `num_epochs` (or `max_steps`) and writes
WORKDIR/classifier.npz (atomically), metrics.jsonl (a record per log window, with the test
accuracy at each epoch's end and at the last step) and config.json. What the loop gives every
trainer: the batch order of step s is a function of (seed, s), the augmentation (random
horizontal flip, random crop of the reflect-padded image) comes from fold_in(key(seed), s),
Orbax checkpoints under WORKDIR/checkpoints from which a rerun resumes exactly, a wall-clock
budget (`max_seconds`: checkpoint, then stop), and a non-finite loss stopping the run
before anything after the last good checkpoint is saved. `training_state.npz` beside each
checkpoint is the compact training state (parameters, BN statistics, momentum, step):
`config.init_weights=training_state.npz` continues the run in an empty workdir exactly.

The optimizer is the trainers' one factory (`basis_jax.training.optim`): SGD with Nesterov
momentum, weight decay on the kernels, a linear warm-up then a linear decay to zero at the
last step; label smoothing. Data-parallel like the other trainers: one `jit` with the batch
sharded over a 1-D mesh of every device, parameters replicated.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from basis_jax import config_help
from basis_jax.files import data as data_lib, sharding

from basis_jax.evaluation import classifier, metrics

from basis_jax.sampling import mixing
from basis_jax.training import optim, train_resume, training_loop
from basis_jax.errors import ConfigError

STATE_FILE = "training_state.npz"
WEIGHTS_FILE = "classifier.npz"
# Config keys a resumed run may change: they change neither the weights nor the metrics.
RESUME_INVARIANT_KEYS = ("log_every", "checkpoint_every", "max_seconds", "max_to_keep",
                         "init_weights", "allow_config_change")


def augment(key, images, padding: int):
  """Random horizontal flip and random crop of the `padding`-reflect-padded image."""
  n, h, w, c = images.shape
  flip_key, y_key, x_key = jax.random.split(key, 3)
  flip = jax.random.bernoulli(flip_key, 0.5, (n,))
  images = jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)
  if padding == 0:
    return images
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
                   mode="reflect")
  ys = jax.random.randint(y_key, (n,), 0, 2 * padding + 1)
  xs = jax.random.randint(x_key, (n,), 0, 2 * padding + 1)
  return jax.vmap(lambda im, y, x: jax.lax.dynamic_slice(im, (y, x, 0), (h, w, c)))(
      padded, ys, xs)


def optimizer_settings(config, num_steps: int) -> optim.OptimizerSettings:
  """`config.optim` with the run's schedule: warm-up, then linear decay to 0 at the end."""
  settings = optim.settings_from_config(config.optim)
  warmup = max(1, min(settings.warmup_steps, num_steps - 1))
  return settings._replace(warmup_steps=warmup, decay_start=warmup,
                           decay_steps=max(1, num_steps - warmup), final_lr_factor=0.0)


def make_train_step(graphdef, tx, *, label_smoothing: float, crop_padding: int, mesh=None):
  """A jitted step (state, images, labels, key) -> (state, {'loss', 'accuracy'}), state =
  {'step', 'params', 'batch_stats', 'opt_state'}; the batch is sharded over `mesh`."""

  def step(state, images, labels, key):
    images = augment(key, images, crop_padding)
    targets = optax.smooth_labels(jax.nn.one_hot(labels, 10), label_smoothing)

    def loss_fn(params):
      # Fresh Variables for this trace: BN writes its running statistics into them.
      stats = jax.tree_util.tree_map(lambda x: x, state["batch_stats"])
      model = nnx.merge(graphdef, params, stats)
      logits = model(images, train=True)
      loss = optax.softmax_cross_entropy(logits, targets).mean()
      return loss, (nnx.state(model, nnx.BatchStat), jnp.mean(jnp.argmax(logits, -1) == labels))

    (loss, (new_stats, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    new = {"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
           "batch_stats": new_stats, "opt_state": opt_state}
    return new, {"loss": loss, "accuracy": acc}

  if mesh is None:
    return jax.jit(step, donate_argnums=0)
  rep, data = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  return jax.jit(step, in_shardings=(rep, data, data, rep), out_shardings=rep,
                 donate_argnums=0)


def model_config(config) -> classifier.ClassifierConfig:
  return classifier.ClassifierConfig.from_dict(dict(config.model))


def _model_config_dict(config) -> dict:
  """The architecture as files record it (JSON types: lists, not tuples)."""
  return json.loads(json.dumps(dataclasses.asdict(model_config(config))))


def init_state(config, tx) -> tuple:
  """(graphdef, step-0 state): fresh weights from config.seed, or `config.init_weights`
  (a classifier.npz starts from its weights; a training_state.npz continues its run)."""
  model = classifier.create(model_config(config), int(config.seed))
  graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  state = {"step": jnp.zeros((), jnp.int32), "params": params, "batch_stats": stats,
           "opt_state": tx.init(params)}
  if config.init_weights:
    state = train_resume.load_into(config.init_weights, state,
                                   architecture=classifier.ARCHITECTURE,
                                   model_config=_model_config_dict(config),
                                   seed=int(config.seed))
  return graphdef, state


class _CrossEntropy(training_loop.Objective):
  """Label-smoothed cross-entropy of augmented batches; the test accuracy at each epoch's
  end and at the last step."""

  non_finite = "The classifier's training loss became non-finite"
  non_finite_hint = "resume with a lower config.optim.lr (and --allow_config_change)."

  def __init__(self, config, graphdef, tx, mesh, train_set, test_set, steps_per_epoch: int,
               rate):
    self.graphdef, self.test_set, self.rate = graphdef, test_set, rate
    self.steps_per_epoch = steps_per_epoch
    self.step_fn = make_train_step(graphdef, tx, label_smoothing=float(config.label_smoothing),
                                   crop_padding=int(config.crop_padding), mesh=mesh)
    batch_size, stream = int(config.batch_size), (int(config.seed),)
    # Two views of one batch order (same stream): the images and their labels.
    self.images = training_loop.MeshBatches(train_set.images, batch_size, stream, mesh)
    self.labels = training_loop.MeshBatches(train_set.labels.astype(np.int32), batch_size,
                                            stream, mesh)
    self.key = jax.random.key(int(config.seed))

  def step(self, state, step: int, lr_scale: float):
    del lr_scale  # 1: no restarts (the rate is a schedule inside the optimizer).
    return self.step_fn(state, self.images(step), self.labels(step),
                        training_loop.step_key(self.key, step))

  def report(self, state, window, steps: int, done: int, last: bool):
    record = {"epoch": done / self.steps_per_epoch,
              "train_loss": float(window["loss"]) / steps,
              "train_accuracy": float(window["accuracy"]) / steps,
              "lr": float(self.rate(done - 1)) if callable(self.rate) else self.rate}
    text = f"loss {record['train_loss']:.3f}  train acc {record['train_accuracy']:.3f}"
    if done % self.steps_per_epoch == 0 or last:
      record["test_accuracy"] = classifier.accuracy(self.model(state), self.test_set.images,
                                                    self.test_set.labels)
      text += f"  test acc {record['test_accuracy']:.4f}"
    return text, record

  def model(self, state) -> classifier.Classifier:
    return nnx.merge(self.graphdef, state["params"], state["batch_stats"])


# Every field a classifier training config must have (configs/train_classifier_cifar10.py
# sets them all). Checked once, before any work.
REQUIRED_FIELDS = ("model", "data", "test_data", "seed", "batch_size", "num_epochs",
                   "max_steps", "optim", "label_smoothing", "crop_padding", "init_weights",
                   "log_every", "checkpoint_every", "max_to_keep", "max_seconds")


def train(config, workdir: str, *, mesh=None, allow_config_change: bool = False) -> dict:
  """Trains (resuming from WORKDIR/checkpoints when there are any), writes
  WORKDIR/classifier.npz at the end; returns the last metrics record (with the test
  accuracy on colour and on gray copies)."""
  config_help.require(config, REQUIRED_FIELDS, hint="start from "
                      "configs/train_classifier_cifar10.py, which sets every field.")
  optim.settings_from_config(config.optim)
  os.makedirs(workdir, exist_ok=True)
  mesh = sharding.make_mesh() if mesh is None else mesh
  batch_size = int(config.batch_size)
  training_loop.check_batch_size(batch_size, mesh, "config.batch_size")
  log_every, checkpoint_every = int(config.log_every), int(config.checkpoint_every)
  if checkpoint_every and log_every and checkpoint_every % log_every:
    raise ConfigError(f"checkpoint_every ({checkpoint_every}) must be a multiple of "
                      f"log_every ({log_every}): the loss is checked before each save.")
  train_resume.record_config(config, workdir, RESUME_INVARIANT_KEYS,
                             allow_config_change=allow_config_change)
  train_set = data_lib.load(config.data)
  test_set = data_lib.load(config.test_data)
  if train_set.labels is None or test_set.labels is None:
    raise ConfigError("The classifier needs labelled training and test images.")
  steps_per_epoch = len(train_set) // batch_size
  if steps_per_epoch == 0:
    raise ConfigError(f"{len(train_set)} training images make no batch of {batch_size}.")
  num_steps = steps_per_epoch * int(config.num_epochs)
  if config.max_steps:
    num_steps = min(num_steps, int(config.max_steps))

  settings = optimizer_settings(config, num_steps)
  tx = optim.make(settings)
  graphdef, state = init_state(config, tx)
  replicated = sharding.replicated(mesh)
  state = jax.device_put(state, replicated)
  save_state = lambda s: train_resume.save(
      os.path.join(workdir, STATE_FILE), s,
      architecture=classifier.ARCHITECTURE, model_config=_model_config_dict(config),
      seed=int(config.seed), noise_meta={}, include_opt_state=True)
  checkpoints = training_loop.OrbaxCheckpoints(workdir, replicated,
                                               max_to_keep=int(config.max_to_keep),
                                               after_save=save_state)
  objective = _CrossEntropy(config, graphdef, tx, mesh, train_set, test_set, steps_per_epoch,
                            optim.learning_rate(settings))
  logging.info("Classifier %s: %s parameters; %d images, %d steps of %d (%d epochs), "
               "%d device(s).", classifier.ARCHITECTURE,
               f"{classifier.count_params(objective.model(state)):,}", len(train_set),
               num_steps, batch_size, int(config.num_epochs), mesh.size)
  try:
    progress = training_loop.Progress(int(state["step"]))
    if checkpoints.latest_step() is not None:
      state, progress = checkpoints.restore(state)
      logging.info("Resumed from step %d.", progress.step)
    metrics_log = training_loop.MetricsLog(os.path.join(workdir, "metrics.jsonl"))
    metrics_log.truncate(int(state["step"]))
    loop = training_loop.LoopSettings(
        num_steps=num_steps, log_every=log_every or steps_per_epoch,
        checkpoint_every=checkpoint_every, max_seconds=float(config.max_seconds))
    state, progress = training_loop.run(objective, state, progress, loop, checkpoints,
                                        metrics_log)
  finally:
    checkpoints.close()
  trained = objective.model(state)
  record = {"step": progress.step, "num_steps": num_steps}
  if progress.step < num_steps:  # Stopped by max_seconds: the checkpoint resumes it.
    logging.info("Stopped at step %d of %d; rerun the same command to continue.",
                 progress.step, num_steps)
    return record
  record["test_accuracy"] = classifier.accuracy(trained, test_set.images, test_set.labels)
  record["test_accuracy_flip_tta"] = classifier.accuracy(trained, test_set.images,
                                                         test_set.labels, flip_tta=True)
  # The colorization baseline's accuracy: the test images' colorization mixtures (gray) as
  # the Average baseline shows them (copied to RGB).
  gray_mixtures = mixing.mix(mixing.Grayscale(), test_set.images[:, None])
  gray = metrics.average_baseline(gray_mixtures, 1, channels=test_set.images.shape[-1])[:, 0]
  record["test_accuracy_grayscale"] = classifier.accuracy(trained, gray, test_set.labels)
  classifier.save(os.path.join(workdir, WEIGHTS_FILE), trained,
                  {"test_accuracy": record["test_accuracy"],
                   "test_accuracy_grayscale": record["test_accuracy_grayscale"],
                   "test_accuracy_flip_tta": record["test_accuracy_flip_tta"],
                   "test_images": len(test_set),
                   "test_data": test_set.name, "train_images": len(train_set),
                   "steps": progress.step, "seed": int(config.seed)})
  logging.info("Wrote %s (test accuracy %.4f on %d images, %.4f with flip TTA; %.4f on their "
               "grayscale copies).", os.path.join(workdir, WEIGHTS_FILE),
               record["test_accuracy"], len(test_set), record["test_accuracy_flip_tta"],
               record["test_accuracy_grayscale"])
  return record
