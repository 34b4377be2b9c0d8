"""Training throughput of score-network candidates on this machine: a table.

  python -m studies.score_unet_throughput --batch=64 --steps=10

For each candidate: parameters, forward GFLOP per image (exact conv/matmul count from the
jaxpr), one DSM training step (forward + backward + Adam) in ms, images/s, achieved
GFLOP/s (training ≈ 3× forward), and the forward time per image (the cost of one Langevin
step of one component in a separation). The published NCSN (F=64) is the baseline row.
"""

import contextlib
import time

from absl import flags
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from basis_jax import cli
from basis_jax.priors import ncsn, score_unet
from benchmarks import measure

_BATCH = flags.DEFINE_integer("batch", 64, "Training batch.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps (after one warm-up).")
_NCSN = flags.DEFINE_bool("ncsn", True, "Include the published NCSN (F=64) as a baseline row.")
_PLAIN = flags.DEFINE_bool(
    "plain_upsampling", True,
    "Also time the shipped network (32/64/64) with its upsampling convs as resize + conv "
    "(the form before score_unet.upsample_conv), in the same run.")

CANDIDATES = {
    "unet 32/64/64": score_unet.ScoreUNetConfig.mnist(widths=(32, 64, 64)),
    "unet 16/32/64": score_unet.ScoreUNetConfig.mnist(widths=(16, 32, 64)),
    "unet 32/64/128": score_unet.ScoreUNetConfig.mnist(widths=(32, 64, 128)),
}


def _measure(name, model, cond, batch, steps):
  graphdef, params = nnx.split(model, nnx.Param)
  apply = lambda p, x, c: nnx.merge(graphdef, p)(x, c)
  tx = optax.adam(1e-3)
  x = jax.random.uniform(jax.random.key(0), (batch, 28, 28, 1))
  c = cond(batch)

  def loss(p):
    return jnp.mean(jnp.square(apply(p, x, c)))

  @jax.jit
  def step(p, o):
    g = jax.grad(loss)(p)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o

  opt = tx.init(params)
  flops = measure.matmul_flops(apply, params, x[:1], c[:1])
  params, opt = step(params, opt)
  jax.block_until_ready(params)
  t = time.perf_counter()
  for _ in range(steps):
    params, opt = step(params, opt)
  jax.block_until_ready(params)
  dt = (time.perf_counter() - t) / steps
  fwd = jax.jit(apply)
  jax.block_until_ready(fwd(params, x, c))
  t = time.perf_counter()
  for _ in range(3):
    jax.block_until_ready(fwd(params, x, c))
  fdt = (time.perf_counter() - t) / 3
  return {"name": name, "params": f"{ncsn.count_params(params):,}",
          "gflop": f"{flops / 1e9:.3f}", "step_ms": f"{1e3 * dt:.0f}",
          "img_s": f"{batch / dt:.0f}", "gflops": f"{3 * flops * batch / dt / 1e9:.1f}",
          "fwd_ms": f"{1e3 * fdt / batch:.2f}"}


@contextlib.contextmanager
def _plain_upsampling():
  """Networks traced inside compute their upsampling as resize + conv."""
  saved = score_unet.upsample_conv
  score_unet.upsample_conv = score_unet.resize_then_conv
  try:
    yield
  finally:
    score_unet.upsample_conv = saved


def main(argv):
  del argv
  rows = []
  sigma = lambda b: jnp.full((b,), 0.3)
  for name, cfg in CANDIDATES.items():
    rows.append(_measure(name, score_unet.build(cfg), sigma, _BATCH.value, _STEPS.value))
    print(rows[-1], flush=True)
  if _PLAIN.value:
    with _plain_upsampling():
      rows.append(_measure("unet 32/64/64, resize + conv upsampling", score_unet.build(
          CANDIDATES["unet 32/64/64"]), sigma, _BATCH.value, _STEPS.value))
    print(rows[-1], flush=True)
  if _NCSN.value:
    rows.append(_measure("ncsn F=64 (published)", ncsn.build(ncsn.NCSNConfig.mnist()),
                         lambda b: jnp.zeros((b,), jnp.int32), _BATCH.value,
                         max(2, _STEPS.value // 5)))
  print(f"jax {jax.__version__}, batch {_BATCH.value}, {jax.device_count()} CPU device(s)")
  print(measure.markdown_table(rows, [
      ("name", "network"), ("params", "params"), ("gflop", "fwd GFLOP/img"),
      ("step_ms", "train step ms"), ("img_s", "train img/s"), ("gflops", "achieved GFLOP/s"),
      ("fwd_ms", "fwd ms/img")]))


if __name__ == "__main__":
  cli.run(main)
