"""Measuring the compiled sampler: FLOP counts, timings, and the reference-style baseline.

The baseline reproduces the structure of the released PyTorch runners, so the two are
compared on the same model, batch and device in one run: a Python loop over the L×T
steps that calls a jitted score once per component and performs the Langevin update as
separate eager array operations on the host side of the loop.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

import jax
import jax.extend.core  # noqa: F401  (jaxpr types for the FLOP walk)
import jax.numpy as jnp
import numpy as np

from basis_jax.files import sharding

# Dense peak matrix rates (TFLOP/s) by device kind: bf16, and fp32 as run by matmul units
# at the platform default (TF32 on NVIDIA) — the "floors" a step is compared against.
PEAK_TFLOPS = {
    # The H200's ~790 TFLOP/s bf16 matrix rate; TF32 ½.
    "NVIDIA H200": {"bf16": 790.0, "fp32": 395.0},
    "NVIDIA H100 80GB HBM3": {"bf16": 790.0, "fp32": 395.0},
}

PRECISIONS = ("highest", "default", "bf16")


def _conv_flops(eqn) -> int:
  out = eqn.outvars[0].aval.shape
  rhs = eqn.invars[1].aval.shape
  dims = eqn.params["dimension_numbers"]
  kernel_spatial = int(np.prod([rhs[d] for d in dims.rhs_spec[2:]]))
  in_features = rhs[dims.rhs_spec[1]]
  return 2 * int(np.prod(out)) * kernel_spatial * int(in_features)


def _dot_flops(eqn) -> int:
  (lhs_contract, _), _ = eqn.params["dimension_numbers"]
  lhs = eqn.invars[0].aval.shape
  contracted = int(np.prod([lhs[d] for d in lhs_contract]))
  return 2 * int(np.prod(eqn.outvars[0].aval.shape)) * contracted


def _sub_jaxprs(eqn):
  for value in eqn.params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(item, jax.extend.core.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, jax.extend.core.Jaxpr):
        yield item


def matmul_flops(fn: Callable, *args) -> int:
  """FLOPs of the convolutions and matrix products in fn(*args), from its jaxpr.

  Elementwise work (norms, ELU, pooling adds) is not counted: the floor is the matrix-unit
  work, matching the published 3.79 / 19.79 GFLOP per image.
  """

  def walk(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
      name = eqn.primitive.name
      if name == "conv_general_dilated":
        total += _conv_flops(eqn)
      elif name == "dot_general":
        total += _dot_flops(eqn)
      for sub in _sub_jaxprs(eqn):
        total += walk(sub)
    return total

  return walk(jax.make_jaxpr(fn)(*args).jaxpr)


@contextlib.contextmanager
def precision_scope(precision: str):
  """'highest' = true float32 matmuls; 'default' = the platform's (TF32 on NVIDIA);
  'bf16' is a model dtype and uses the default scope here."""
  if precision == "highest":
    with jax.default_matmul_precision("highest"):
      yield
  else:
    yield


def time_compiled(compiled, args, repeats: int) -> list[float]:
  """Wall seconds of `repeats` runs of a compiled function, each blocked to completion."""
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t0)
  return times


def reference_loop(score_fn, params, mixtures, schedule, num_components: int, key,
                   num_steps: int | None = None) -> tuple[float, int]:
  """Times the reference's loop structure; returns (seconds, steps run).

  Per step: one jitted score call per component, then the update of every component as
  eager array operations (each a separate dispatch), as the PyTorch runners do. `num_steps`
  may cut the run short (the time per step is what is compared).
  """
  score = jax.jit(score_fn)
  n = mixtures.shape[0]
  shape = mixtures.shape[1:]
  key, init_key = jax.random.split(key)
  xs = [jax.random.uniform(k, (n,) + shape) for k in jax.random.split(init_key, num_components)]
  step_sizes = schedule.step_sizes()
  inv_gamma2 = 1.0 / schedule.likelihood_variances()
  weight = schedule.likelihood_weight
  total = schedule.num_steps if num_steps is None else min(num_steps, schedule.num_steps)
  jax.block_until_ready(score(params, xs[0], jnp.int32(0)))  # Compile outside the timing.
  steps = 0
  t0 = time.perf_counter()
  for level in range(schedule.num_levels):
    eta = float(step_sizes[level])
    for _ in range(schedule.steps_per_level):
      if steps == total:
        break
      scores = [score(params, x, jnp.int32(level)) for x in xs]
      residual = mixtures - sum(xs)
      key, *noise_keys = jax.random.split(key, num_components + 1)
      xs = [x + eta * (s + weight * inv_gamma2[level] * residual)
            + np.sqrt(2 * eta) * jax.random.normal(nk, x.shape)
            for x, s, nk in zip(xs, scores, noise_keys)]
      steps += 1
  jax.block_until_ready(xs)
  return time.perf_counter() - t0, steps


def hardware_probes(config, arch, repeats: int = 5, matmul_size: int = 2048
                    ) -> list[dict[str, Any]]:
  """Throughput of the two kernels the sampler is bound by, measured the way it runs them.

  - one 3×3 'same' convolution at the network's widest shape (N·k images at half
    resolution, 2·ngf channels in and out): most of the network's FLOPs are such convs;
  - a dense `matmul_size`² matmul per device (2048²): the closest to the machine's peak
    multiply rate.

  JAX runs both on every local device at once, the batch split as the sampler splits it
  (one device per core on the CPU); PyTorch, when importable and on the CPU, runs them in
  its intra-op threads. Each row: framework, kernel, dtype, devices or threads, ms, GFLOP/s.
  """
  devices = jax.local_devices()
  mesh = sharding.make_mesh(devices)
  split, whole = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  batch = -(-config.batch_sizes[0] * config.num_components // len(devices)) * len(devices)
  size, channels, n = arch.image_size // 2, 2 * arch.ngf, matmul_size
  conv_shape = (batch, size, size, channels)
  conv_flops = 2 * batch * size * size * 9 * channels * channels
  x = jax.device_put(jax.random.normal(jax.random.key(0), conv_shape), split)
  w = jax.device_put(jax.random.normal(jax.random.key(1), (3, 3, channels, channels)) * 0.05,
                     whole)
  a = jax.device_put(jax.random.normal(jax.random.key(2), (len(devices) * n, n)), split)
  b = jax.device_put(jax.random.normal(jax.random.key(3), (n, n)), whole)
  rows = []

  def add(framework, kernel, dtype, workers, shape, flops, fn):
    fn()
    seconds = min(_wall(fn) for _ in range(repeats))
    rows.append({"framework": framework, "kernel": kernel, "dtype": dtype, "workers": workers,
                 "shape": shape, "ms": 1e3 * seconds, "gflops": flops / seconds / 1e9})

  jax_name, jax_workers = f"jax {jax.__version__}", f"{len(devices)} devices"
  for dtype in (jnp.float32, jnp.bfloat16):
    conv = jax.jit(lambda x, w, dt=dtype: jax.lax.conv_general_dilated(
        x.astype(dt), w.astype(dt), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        preferred_element_type=jnp.float32), out_shardings=split)
    matmul = jax.jit(lambda a, b, dt=dtype: jnp.dot(
        a.astype(dt), b.astype(dt), preferred_element_type=jnp.float32), out_shardings=split)
    name = jnp.dtype(dtype).name
    add(jax_name, "3×3 conv", name, jax_workers, "×".join(map(str, conv_shape)), conv_flops,
        lambda conv=conv: jax.block_until_ready(conv(x, w)))
    add(jax_name, "matmul", name, jax_workers, f"{len(devices)}×{n}³",
        2 * len(devices) * n**3, lambda matmul=matmul: jax.block_until_ready(matmul(a, b)))
  if jax.default_backend() != "cpu":
    return rows  # PyTorch's probes run on the CPU; beside GPU rows they would mislead.
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    return rows
  layer = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
  xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
  at = torch.from_numpy(np.array(b))
  torch_name, torch_workers = f"pytorch {torch.__version__}", f"{torch.get_num_threads()} threads"
  for dtype in ("float32", "bfloat16"):
    bf16 = dtype == "bfloat16"

    def run_conv(bf16=bf16):
      with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        layer(xt)

    operand = at.to(torch.bfloat16) if bf16 else at
    add(torch_name, "3×3 conv", "bfloat16 (autocast)" if bf16 else dtype, torch_workers,
        "×".join(map(str, conv_shape)), conv_flops, run_conv)
    add(torch_name, "matmul", dtype, torch_workers, f"1×{n}³", 2 * n**3,
        lambda operand=operand: torch.mm(operand, operand))
  return rows


def probe_rate(rows, framework: str, kernel: str, dtype: str) -> float | None:
  """GFLOP/s of the probe row for `framework` (prefix), `kernel` and `dtype`, if measured."""
  for row in rows or ():
    if row["framework"].startswith(framework) and row["kernel"] == kernel \
        and row["dtype"] == dtype:
      return row["gflops"]
  return None


def _wall(fn) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def relative_error(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
  """A GitHub markdown table of `rows` with (key, header) `columns`."""

  def fmt(value):
    if value is None:
      return "n/a"
    if isinstance(value, float):
      return f"{value:.4g}"
    return str(value)

  lines = ["| " + " | ".join(h for _, h in columns) + " |",
           "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(fmt(row.get(k)) for k, _ in columns) + " |" for row in rows]
  return "\n".join(lines)
