"""Experiment (issue 34): one Glow body for every σ, fine-tuned jointly over the ladder.

The shipped ladder is ten whole models (BASIS's serial fine-tuning), which a wider Glow
cannot afford within the weights budget; modulation-only ladders (frozen clean body) and
mixed ladders separate worse (docs/glow.md). This study fine-tunes the clean model's body
*jointly* on all σ while each σ keeps its own modulation parameters
(`glow.is_modulation_parameter`): every image of a batch draws a σ level, its noise and its
level's modulation parameters, and the shared body receives the gradients of all levels (as
a noise-conditional score network is trained). The result is written in the compact
`per_sigma: modulation` format, so `configs/mnist_glow.py` loads it as it is.

The clean model gives infinite bits/dim to images with large noise, so the levels enter
from the smallest σ up, as BASIS's serial stages do: the steps are split into one phase per
level; in phase k the k+1 smallest σ are trained, the newest one on half of the images,
and a level entering starts from the modulation parameters of the one below it.

Measured (2026-12-07, docs/glow.md "One body for every σ"): held-out bits/dim within 0.03 of
the shipped ladder at every σ (0.14 better at σ = 0.01), 1.9 MB instead of 6.6, but 1.7 dB
below the shipped ladder on 20 held-out mixtures; not shipped. Commands:

    python -m studies.glow_joint_finetune --data_path=/path/to/mnist --steps=4000 \
        --out=runs/glow_joint
    python -m experiments.separate --config=configs/mnist_glow.py:heldout \
        --config.data.path=/path/to/mnist --config.num_mixtures=20 --config.batch_size=20 \
        --config.prior.weights=runs/glow_joint/glow_sigmas.npz --workdir=runs/sep_joint

Held-out bits/dim per σ are measured as `experiments.train_glow` measures them (the same
1,000 images 58,000-58,999, the same noise), so they compare with the shipped ladder's
`training/glow_mnist/metrics.jsonl`. A study, not a trainer: it is not resumable (it
rewrites its output at every evaluation) and takes a model without LU variables.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags, logging
from flax import nnx

from basis_jax.files import data as data_lib
from basis_jax.priors import glow
from basis_jax.priors.glow_model import modulation_mask, select_level
from basis_jax.sampling import schedules
from basis_jax.training import glow_training, optim
from configs import train_glow_mnist

_DATA = flags.DEFINE_string("data_path", None, "MNIST directory (the four idx .gz files).",
                            required=True)
_CLEAN = flags.DEFINE_string("clean", "training/glow_mnist/glow_clean.npz",
                             "The clean Glow to start from.")
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_STEPS = flags.DEFINE_integer("steps", 4000, "Optimizer steps.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Images per step (each at its own σ).")
_LR = flags.DEFINE_float("lr", 1e-3, "Adamax learning rate after the warm-up.")
_WARMUP = flags.DEFINE_integer("warmup", 500, "Linear warm-up steps.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 1000, "Held-out evaluation every N steps.")
_SEED = flags.DEFINE_integer("seed", 0, "Data order, levels and noise.")


def load_images(path: str, split: str, first: int, count: int, config) -> np.ndarray:
  data = dict(train_glow_mnist.get_config().data)
  data.update(path=path, split=split, first_example=first, num_examples=count)
  space = glow.data_space(config, (28, 28, 1))
  return np.asarray(space.to_prior(data_lib.load(data).images), np.float32)


def main(argv):
  del argv
  weights = glow.load_weights(_CLEAN.value)
  if weights.sigmas is not None:
    raise ValueError(f"{_CLEAN.value} holds per-σ models; give one clean model.")
  config, graphdef = weights.config, weights.graphdef
  if config.lu_decomposed:
    raise ValueError("This study takes a Glow without LU variables.")
  sigmas = schedules.geometric_sigmas(1.0, 0.01, 10)  # Level order: largest σ first.
  num_levels = len(sigmas)
  mask = modulation_mask(weights.state)
  stacked = jax.tree.map(
      lambda a, m: jnp.asarray(np.repeat(np.asarray(a)[None], num_levels if m else 1, 0)),
      weights.state, mask)
  train = load_images(_DATA.value, "train", 0, 58000, config)
  held_out = load_images(_DATA.value, "train", 58000, 1000, config)

  def bpd_one(params, x, level, key):
    k_deq, k_noise = jax.random.split(key)
    x = glow.dequantize(x[None], k_deq, config.n_bits)
    x = x + jnp.asarray(sigmas)[level] * jax.random.normal(k_noise, x.shape)
    log_prob = nnx.merge(graphdef, select_level(params, level))(x)
    return glow.log_prob_to_bits_per_dim(log_prob, config)[0]

  def loss_fn(params, images, levels, keys):
    return jnp.mean(jax.vmap(bpd_one, in_axes=(None, 0, 0, 0))(params, images, levels, keys))

  tx = optax.adamax(optax.join_schedules(
      [optax.linear_schedule(_LR.value / _WARMUP.value, _LR.value, _WARMUP.value),
       optax.constant_schedule(_LR.value)], [_WARMUP.value]))

  @jax.jit
  def step(params, opt_state, images, levels, keys):
    loss, grads = jax.value_and_grad(loss_fn)(params, images, levels, keys)
    finite = jnp.isfinite(loss) & jnp.all(jnp.array(
        [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    updates, new_opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    return keep(new_params, params), keep(new_opt_state, opt_state), loss, finite

  _, _, eval_bpd = glow_training.make_steps(
      graphdef, config, optim.settings_from_config(train_glow_mnist.get_config().optim))
  eval_key = glow_training.held_out_key(0)

  def evaluate(params):
    return [float(eval_bpd(select_level(params, i), nnx.State({}), held_out, eval_key,
                           sigmas[i])) for i in range(num_levels)]

  os.makedirs(_OUT.value, exist_ok=True)
  records = open(os.path.join(_OUT.value, "metrics.jsonl"), "a")

  def record(entry):
    logging.info("%s", json.dumps(entry))
    records.write(json.dumps(entry) + "\n")
    records.flush()

  record({"step": 0, "held_out_bpd": evaluate(stacked), "sigmas": list(sigmas)})
  opt_state = tx.init(stacked)
  rng = np.random.default_rng(_SEED.value)
  key = jax.random.key(_SEED.value)
  order, position, window, skipped, start = rng.permutation(len(train)), 0, [], 0, time.time()
  entered = num_levels - 1
  for t in range(1, _STEPS.value + 1):
    if position + _BATCH.value > len(order):
      order, position = rng.permutation(len(train)), 0
    batch = train[order[position:position + _BATCH.value]]
    position += _BATCH.value
    phase = min((t - 1) * num_levels // _STEPS.value, num_levels - 1)
    newest = num_levels - 1 - phase  # Level order is largest σ first.
    if newest != entered:  # A level enters: it starts as the level below it.
      stacked = jax.tree.map(lambda a, m: a.at[newest].set(a[newest + 1]) if m else a,
                             stacked, mask)
      entered = newest
    levels = np.where(rng.random(_BATCH.value) < 0.5, newest,
                      rng.integers(newest, num_levels, _BATCH.value))
    keys = jax.random.split(jax.random.fold_in(key, t), _BATCH.value)
    stacked, opt_state, loss, finite = step(stacked, opt_state, batch, levels, keys)
    if bool(finite):
      window.append(float(loss))
    else:
      skipped += 1
    if t % 100 == 0:
      record({"step": t, "train_bpd_mixed_sigma": float(np.mean(window)) if window else None,
              "skipped": skipped, "steps_per_sec": t / (time.time() - start)})
      window = []
    if t % _EVAL_EVERY.value == 0 or t == _STEPS.value:
      record({"step": t, "held_out_bpd": evaluate(stacked)})
      glow.save_weights(os.path.join(_OUT.value, "glow_sigmas.npz"), config, stacked,
                        sigmas, per_sigma="modulation", joint_steps=t,
                        source=os.path.basename(_CLEAN.value))
  records.close()


if __name__ == "__main__":
  app.run(main)
