"""Training steps/s of a score-network training config, for several widths: a table.

  python -m studies.train_throughput --config=configs/train_score_unet_cifar10.py \
      --widths=32/64/64,32/64/128,32/64/128/128 --steps=6

Times the trainer's own jitted step (DSM loss, backward, Adam, EMA, flips as configured) on
random uint8 images of the config's shape, the batch sharded over every device exactly as
`experiments.train` runs it (one CPU device per core unless JAX_NUM_CPU_DEVICES says
otherwise; `JAX_NUM_CPU_DEVICES=1` gives the single-device figure). Each row: parameters,
the compact training state's size (params, EMA, two Adam moments, float32), ms per step
(mean of --steps after one compile step) and steps/s. Pause any training job first.
"""

import time

from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

from basis_jax import cli, overview

from basis_jax.files import sharding

from basis_jax.training import score_training

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.")
_WIDTHS = flags.DEFINE_list("widths", [], "Candidate widths, e.g. 32/64/64,32/64/128 "
                            "(empty: the config's own).")
_STEPS = flags.DEFINE_integer("steps", 6, "Timed steps after the compile step.")
flags.mark_flag_as_required("config")


def measure(config, steps: int) -> dict:
  """Params, state MB and step time of `config`'s training step on this machine."""
  cfg = score_training.model_config(config)
  mesh = sharding.make_mesh()
  graphdef, state = score_training.init_state(config)
  state = jax.device_put(state, sharding.replicated(mesh))
  step = score_training.train_step(config, graphdef)
  b = config.training.batch_size
  images = np.random.default_rng(0).integers(
      0, 256, (b, cfg.image_size, cfg.image_size, cfg.channels), dtype=np.uint8)
  batch = sharding.global_batch(mesh, images, b)
  key = jax.random.key(0)
  state, _ = step(state, batch, key)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for i in range(steps):
    state, _ = step(state, batch, jax.random.fold_in(key, i + 1))
  jax.block_until_ready(state)
  seconds = (time.perf_counter() - start) / steps
  params = overview.count_params(state["params"])
  return {"widths": "/".join(map(str, cfg.widths)), "params": params,
          "state_mb": 4 * 4 * params / 1e6, "ms": 1e3 * seconds, "steps_s": 1 / seconds}


def main(argv):
  del argv
  config = _CONFIG.value
  candidates = [tuple(int(w) for w in c.split("/")) for c in _WIDTHS.value] or [
      tuple(score_training.model_config(config).widths)]
  print(f"jax {jax.__version__}, {jax.device_count()} {jax.devices()[0].platform} device(s), "
        f"batch {config.training.batch_size}, {config.model.dataset}")
  print("| widths | params | state MB | step ms | steps/s |\n|---|---|---|---|---|", flush=True)
  for widths in candidates:
    config.model.widths = widths
    r = measure(config, _STEPS.value)
    print(f"| {r['widths']} | {r['params']:,} | {r['state_mb']:.1f} | {r['ms']:.0f} | "
          f"{r['steps_s']:.2f} |", flush=True)


if __name__ == "__main__":
  cli.run(main, cpu_device_per_core=True)
