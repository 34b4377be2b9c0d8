"""Glow training and sampling cost on this machine, per candidate architecture: a table.

  python -m studies.glow_throughput --candidates=32x32x3/3/8/64,32x32x1/3/8/64 --steps=5

Each candidate is HxWxC/levels/depth/width. Times the Glow trainer's own jitted step
(`glow_training.make_steps`: noisy-data bits/dim, backward, Adamax) at `--batch` on random
8-bit images, and the prior's score ∇ log p(x) (what every Langevin step evaluates) on a
batch of `--score_batch` images. One device (JAX's default on the CPU). Rows: parameters,
float16 size of 10 per-σ copies (the shipping cost of the paper's one-model-per-σ ladder)
and of a ladder fine-tuned with `train.finetune_params=modulation` (the body once, the
modulation parameters per σ),
ms per training step, images/s trained, score evaluations per second. Pause any training
job first.
"""

import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from basis_jax import cli, overview
from basis_jax.files import checkpoint_io

from basis_jax.training import glow_training, optim
from configs import base_training
from basis_jax.priors import glow

_CANDIDATES = flags.DEFINE_list("candidates", ["32x32x3/3/8/64", "32x32x1/3/8/64"],
                                "HxWxC/levels/depth/width, comma separated.")
_BATCH = flags.DEFINE_integer("batch", 64, "Training batch.")
_SCORE_BATCH = flags.DEFINE_integer("score_batch", 100, "Images per score call.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed calls after the compile call.")


def parse(candidate: str) -> glow.GlowConfig:
  shape, levels, depth, width = candidate.split("/")
  return glow.GlowConfig(image_shape=tuple(int(s) for s in shape.split("x")),
                         levels=int(levels), depth=int(depth), width=int(width))


def _time(fn, steps):
  jax.block_until_ready(fn(0))
  start = time.perf_counter()
  for i in range(steps):
    out = fn(i + 1)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps


def measure(config: glow.GlowConfig, batch: int, score_batch: int, steps: int) -> dict:
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (batch,) + config.image_shape).astype(np.float32) / 255
  model = glow.create(config, init_batch=glow.dequantize(images, jax.random.key(1)))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  adamax = optim.settings_from_config(base_training.optim(name="adamax"))
  opt_init, train_step, _ = glow_training.make_steps(graphdef, config, adamax)
  opt_state = opt_init(params)
  key = jax.random.key(0)
  state = {"params": params, "opt": opt_state}
  trainable = jax.tree.map(lambda _: np.float32(1.0), params)

  def train(i):
    state["params"], state["opt"], loss, _ = train_step(
        state["params"], rest, state["opt"], images, jax.random.fold_in(key, i), 0.01, 1e-4,
        trainable)
    return loss

  step_s = _time(train, steps)
  graphdef, full = nnx.split(model)
  score = jax.jit(glow.make_score_fn(graphdef))
  x = jnp.asarray(rng.uniform(-0.5, 0.5, (score_batch,) + config.image_shape), jnp.float32)
  score_s = _time(lambda i: score(full, x + 1e-3 * i), steps)
  num_params = overview.count_params(params)
  flat = checkpoint_io.flatten(params)[0]
  per_sigma = sum(int(np.prod(v.shape)) for k, v in flat.items()
                  if glow.is_modulation_parameter(k))
  return {"params": num_params, "mb16": 10 * 2 * num_params / 1e6,
          "mb16_modulation": 2 * (num_params + 9 * per_sigma) / 1e6, "step_ms": 1e3 * step_s,
          "img_s": batch / step_s, "score_s": score_batch / score_s}


def main(argv):
  del argv
  print(f"jax {jax.__version__}, {jax.devices()[0].platform}, training batch {_BATCH.value}, "
        f"score batch {_SCORE_BATCH.value}")
  print("| candidate | params | 10 σ, fp16 MB | 10 σ, modulation only, fp16 MB | "
        "train ms/step | images/s trained | scores/s |\n|---|---|---|---|---|---|---|",
        flush=True)
  for candidate in _CANDIDATES.value:
    r = measure(parse(candidate), _BATCH.value, _SCORE_BATCH.value, _STEPS.value)
    print(f"| {candidate} | {r['params']:,} | {r['mb16']:.1f} | {r['mb16_modulation']:.1f} | "
          f"{r['step_ms']:.0f} | "
          f"{r['img_s']:.0f} | {r['score_s']:.0f} |", flush=True)


if __name__ == "__main__":
  cli.run(main)
