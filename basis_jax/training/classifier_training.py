"""Training the CIFAR-10 classifier of `basis_jax.evaluation.classifier`
(configs/train_classifier_cifar10.py).

`train(config, workdir)` runs the whole loop and writes WORKDIR/classifier.npz (atomically),
metrics.jsonl (one line per epoch) and config.json. Reproducible from `config.seed`: the
order of epoch e is a numpy permutation seeded by (seed, e) and the augmentation of step s
(random horizontal flip, random crop of the reflect-padded image) comes from
fold_in(key(seed), s). SGD with Nesterov momentum, weight decay on the kernels, label
smoothing, a linear warm-up then a linear decay to zero over the whole run.

Data-parallel like the other trainers: one `jit` with the batch sharded over a 1-D mesh of
every device (`basis_jax.cli` gives JAX one CPU device per core), parameters replicated.
"""

from __future__ import annotations

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

from basis_jax.files import atomic, data as data_lib, sharding

from basis_jax.evaluation import classifier, metrics

from basis_jax.sampling import mixing
from basis_jax.errors import ConfigError


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


def make_optimizer(optim: Any, num_steps: int) -> optax.GradientTransformation:
  warmup = max(1, min(int(optim.warmup_steps), num_steps - 1))
  schedule = optax.join_schedules(
      [optax.linear_schedule(0.0, optim.lr, warmup),
       optax.linear_schedule(optim.lr, 0.0, max(1, num_steps - warmup))], [warmup])
  kernels_only = lambda params: jax.tree_util.tree_map(lambda p: p.ndim > 1, params)
  return optax.chain(optax.add_decayed_weights(optim.weight_decay, mask=kernels_only),
                     optax.sgd(schedule, momentum=optim.momentum, nesterov=True))


def make_train_step(graphdef, tx, *, label_smoothing: float, crop_padding: int, mesh=None):
  """A jitted step (params, stats, opt_state, images, labels, key) ->
  (params, stats, opt_state, loss, accuracy); the batch is sharded over `mesh`."""

  def step(params, stats, opt_state, images, labels, key):
    images = augment(key, images, crop_padding)
    targets = optax.smooth_labels(jax.nn.one_hot(labels, 10), label_smoothing)

    def loss_fn(params):
      # Fresh Variables for this trace: BN writes its running statistics into them.
      model = nnx.merge(graphdef, params, jax.tree_util.tree_map(lambda x: x, stats))
      logits = model(images, train=True)
      loss = optax.softmax_cross_entropy(logits, targets).mean()
      return loss, (nnx.state(model, nnx.BatchStat), jnp.mean(jnp.argmax(logits, -1) == labels))

    (loss, (new_stats, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_stats, opt_state, loss, acc

  if mesh is None:
    return jax.jit(step, donate_argnums=(0, 1, 2))
  rep, data = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  return jax.jit(step, in_shardings=(rep, rep, rep, data, data, rep),
                 out_shardings=rep, donate_argnums=(0, 1, 2))


def model_config(config) -> classifier.ClassifierConfig:
  return classifier.ClassifierConfig.from_dict(dict(config.model))


def train(config, workdir: str, *, mesh=None) -> dict:
  """Trains, evaluates on config.test_data each epoch, writes WORKDIR/classifier.npz;
  returns the final metrics."""
  os.makedirs(workdir, exist_ok=True)
  atomic.write_json(os.path.join(workdir, "config.json"),
                    json.loads(config.to_json_best_effort(sort_keys=True)))
  mesh = sharding.make_mesh() if mesh is None else mesh
  batch_size = int(config.batch_size)
  if batch_size % mesh.size:
    raise ConfigError(f"config.batch_size={batch_size} is not a multiple of the "
                      f"{mesh.size} devices.", hint="JAX_NUM_CPU_DEVICES=1 uses one device.")
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

  model = classifier.create(model_config(config), int(config.seed))
  logging.info("Classifier %s: %s parameters; %d images, %d steps of %d (%d epochs), "
               "%d device(s).", classifier.ARCHITECTURE, f"{classifier.count_params(model):,}",
               len(train_set), num_steps, batch_size, int(config.num_epochs), mesh.size)
  graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  tx = make_optimizer(config.optim, num_steps)
  opt_state = tx.init(params)
  step_fn = make_train_step(graphdef, tx, label_smoothing=float(config.label_smoothing),
                            crop_padding=int(config.crop_padding), mesh=mesh)
  data_sharding = sharding.batch_sharding(mesh)
  base_key = jax.random.key(int(config.seed))
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  step, start, record = 0, time.time(), {}
  while step < num_steps:
    epoch = step // steps_per_epoch
    order = np.random.default_rng((int(config.seed), epoch)).permutation(len(train_set))
    losses, accs, epoch_start = [], [], time.time()
    for b in range(steps_per_epoch):
      if step >= num_steps:
        break
      idx = np.sort(order[b * batch_size:(b + 1) * batch_size])
      images = jax.device_put(train_set.images[idx], data_sharding)
      labels = jax.device_put(train_set.labels[idx].astype(np.int32), data_sharding)
      params, stats, opt_state, loss, acc = step_fn(params, stats, opt_state, images, labels,
                                                    jax.random.fold_in(base_key, step))
      losses.append(loss)
      accs.append(acc)
      step += 1
      if len(losses) == 1:  # Time the epoch from here: the first step also compiles.
        jax.block_until_ready(loss)
        epoch_start = time.time()
    jax.block_until_ready(params)
    seconds_per_step = (time.time() - epoch_start) / max(1, len(losses) - 1)
    trained = nnx.merge(graphdef, params, stats)
    record = {"epoch": epoch + 1, "step": step,
              "train_loss": float(np.mean(jax.device_get(losses))),
              "train_accuracy": float(np.mean(jax.device_get(accs))),
              "test_accuracy": classifier.accuracy(trained, test_set.images, test_set.labels),
              "seconds_per_step": seconds_per_step,
              "elapsed_s": time.time() - start}
    with open(metrics_path, "a") as f:
      f.write(json.dumps(record) + "\n")
    logging.info("epoch %d step %d: loss %.3f, train acc %.3f, test acc %.3f (%.3f s/step)",
                 record["epoch"], step, record["train_loss"], record["train_accuracy"],
                 record["test_accuracy"], record["seconds_per_step"])
  # The colorization baseline's accuracy: the test images' colorization mixtures (gray) as
  # the Average baseline shows them (copied to RGB).
  gray_mixtures = mixing.mix(mixing.Grayscale(), test_set.images[:, None])
  gray = metrics.average_baseline(gray_mixtures, 1, channels=test_set.images.shape[-1])[:, 0]
  record["test_accuracy_grayscale"] = classifier.accuracy(trained, gray, test_set.labels)
  classifier.save(os.path.join(workdir, "classifier.npz"), nnx.merge(graphdef, params, stats),
                  {"test_accuracy": record["test_accuracy"],
                   "test_accuracy_grayscale": record["test_accuracy_grayscale"],
                   "test_images": len(test_set),
                   "test_data": test_set.name, "train_images": len(train_set),
                   "steps": step, "seed": int(config.seed)})
  logging.info("Wrote %s (test accuracy %.3f on %d images; %.3f on their grayscale copies).",
               os.path.join(workdir, "classifier.npz"), record["test_accuracy"], len(test_set),
               record["test_accuracy_grayscale"])
  return record
