"""The NCSN sampler benchmark behind experiments/benchmark.py (see BENCHMARKS.md).

Long phases (compiling, timing, the baselines) log a line when they start, each row is
logged as one table line when it is measured, and `run`'s `on_row` gets the results so far
after every row: `report.save` as `on_row` keeps a stopped run's rows on disk.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from basis_jax.sampling import memory, mixing, sampler, schedules

from basis_jax.files import sharding
from basis_jax.priors import ncsn
from basis_jax.priors.base import UNIFORM_INIT
from benchmarks import measure, report
from configs import base_separation


def _network(config, dtype):
  preset = ncsn.NCSNConfig.mnist if config.model == "mnist" else ncsn.NCSNConfig.cifar10
  overrides = {"dtype": None if dtype == "float32" else dtype}
  if config.ngf:
    overrides["ngf"] = config.ngf
  arch = preset(**overrides)
  graphdef, params = nnx.split(ncsn.build(arch, config.seed), nnx.Param)
  return arch, ncsn.make_score_fn(graphdef), params


def _schedule(config) -> schedules.Schedule:
  return schedules.Schedule(schedules.geometric_sigmas(1.0, 0.01, config.num_levels),
                            config.steps_per_level, config.step_lr)


def _mixtures(rows: int, shape) -> jax.Array:
  """The benchmark's mixtures (sums of two [0, 1] images lie in [0, 2])."""
  return jax.random.uniform(jax.random.key(1), (rows,) + tuple(shape), jnp.float32, 0.0, 2.0)


def _is_out_of_memory(error: Exception) -> bool:
  text = str(error)
  return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def _time_sampler(config, score_fn, params, arch, batch, precision, *, unroll=1,
                  per_component=False, mesh=None, label="sampler"):
  """Compiles and times one sampler configuration; returns a result row."""
  k = config.num_components
  schedule = _schedule(config)
  shape = (arch.image_size, arch.image_size, arch.channels)
  separate = sampler.make_separator(
      (score_fn,) * k if per_component else score_fn, mixing.Sum((1.0,) * k), schedule,
      component_shape=shape, options=sampler.SamplerOptions.from_section(
          base_separation.get_config().sampler, UNIFORM_INIT, unroll=unroll))
  mesh = mesh or sharding.make_mesh(jax.local_devices())
  devices = mesh.devices.size
  rows = -(-batch // devices) * devices
  data, rep = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  mixtures = jax.device_put(_mixtures(rows, shape), data)
  indices = jax.device_put(jnp.arange(rows, dtype=jnp.int32), data)
  run_params = (params,) * k if per_component else params
  args = (jax.device_put(run_params, rep), mixtures, jax.random.key(0), indices)
  jitted = sharding.jit_batch_fn(separate, mesh)
  logging.info("%s, %s, %d mixtures: compiling", label, precision, rows)
  with measure.precision_scope(precision):
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - t0
  logging.info("%s: compiled in %.1f s; timing %d run(s) of %d steps", label, compile_s,
               config.repeats, schedule.num_steps)
  times = measure.time_compiled(compiled, args, config.repeats)
  seconds = float(np.median(times))
  flops_per_image = measure.matmul_flops(
      lambda x: score_fn(params, x, jnp.int32(0)), jnp.zeros((1,) + shape))
  total_flops = flops_per_image * rows * k * schedule.num_steps
  tflops = total_flops / seconds / 1e12
  peaks = measure.PEAK_TFLOPS.get(jax.local_devices()[0].device_kind, {})
  floor_key = "bf16" if precision == "bf16" else "fp32"
  peak_bytes, memory_kind = memory.peak_memory_bytes(compiled)
  return {
      "precision": precision, "batch": rows, "devices": devices, "unroll": unroll,
      "fused_components": not per_component, "compile_s": compile_s, "seconds": seconds,
      "ms_per_step": 1e3 * seconds / schedule.num_steps,
      "seconds_full_schedule": seconds / schedule.num_steps * config.report_steps,
      "mixtures_per_s": rows / (seconds / schedule.num_steps * config.report_steps),
      "gflop_per_image": flops_per_image / 1e9, "tflops": tflops,
      "frac_bf16_peak": tflops / peaks["bf16"] if peaks else None,
      "frac_own_floor": tflops / peaks[floor_key] if peaks else None,
      "peak_memory_gib": None if peak_bytes is None else peak_bytes / 2**30,
      "memory_kind": memory_kind,
  }


def _score_errors(config, precisions) -> dict[str, float]:
  """Relative error of each mode's score against float32 'highest' on the same input."""
  arch, score_fn, params = _network(config, "float32")
  shape = (16, arch.image_size, arch.image_size, arch.channels)
  x = jax.random.uniform(jax.random.key(5), shape)
  with measure.precision_scope("highest"):
    reference = jax.jit(score_fn)(params, x, jnp.int32(config.num_levels - 1))
  errors = {}
  for precision in precisions:
    if precision == "bf16":
      _, fn, _ = _network(config, "bfloat16")
    else:
      fn = score_fn
    with measure.precision_scope(precision):
      value = jax.jit(fn)(params, x, jnp.int32(config.num_levels - 1))
    errors[precision] = measure.relative_error(value, reference)
  return errors


def _import_torch():
  """(the reference port, the PyTorch loop) when torch and the tests' reference port are
  importable (a checkout run from its root), else None: the baseline is skipped."""
  # pylint: disable=import-outside-toplevel
  try:
    from benchmarks import torch_loop
    from tests.reference import torch_ncsn
  except ImportError as error:
    logging.info("No PyTorch baseline: %s", error)
    return None
  return torch_ncsn, torch_loop


def _torch_baseline(config, arch, params, batch: int, results, measured) -> None:
  """results['pytorch']: the PyTorch rows on the JAX rows' weights and mixtures, the
  released loop and the fused no-grad variant, each timed per step at level 0 and
  extrapolated to report_steps; `measured` is called after each row.

  Also the relative difference of the two frameworks' scores on the same input, which
  shows that both run the same network. Left None without torch.
  """
  modules = _import_torch() if config.torch_baseline else None
  if modules is None:
    return
  torch_ncsn, torch_loop = modules
  import torch  # pylint: disable=import-outside-toplevel
  # PyTorch runs where JAX runs; a CPU baseline beside GPU rows would compare devices.
  device = "cuda" if jax.default_backend() == "gpu" else "cpu"
  if device == "cuda" and not torch.cuda.is_available():
    logging.info("No PyTorch baseline: JAX runs on a GPU but this torch has no CUDA.")
    return
  if config.threads:
    torch.set_num_threads(config.threads)
  logging.info("PyTorch baseline: loading the JAX weights, checking the score")
  model = torch_ncsn.from_jax(params, arch.channels, arch.ngf, arch.num_classes)
  shape = (arch.image_size, arch.image_size, arch.channels)
  probe = jax.random.uniform(jax.random.key(5), (2,) + shape)
  graphdef, _ = ncsn.abstract_params(arch)
  with measure.precision_scope("highest"):
    expected = jax.jit(ncsn.make_score_fn(graphdef))(params, probe, jnp.int32(0))
  score_error = measure.relative_error(torch_ncsn.score(model, np.asarray(probe), 0),
                                            expected)
  # PyTorch's own count of what its model executes (the reference's conv-then-pool in
  # res2.0: 2 % more than the JAX program, which merges it; ncsn_layers.ConvMeanPool).
  from torch.utils.flop_counter import FlopCounterMode  # pylint: disable=import-outside-toplevel
  with torch.no_grad(), FlopCounterMode(display=False) as counter:
    torch_ncsn.score(model, np.zeros((1,) + shape, np.float32), 0)
  flops_per_step = config.num_components * batch * counter.get_total_flops()
  schedule = _schedule(config)
  mixtures = np.asarray(_mixtures(batch, shape))
  rows = []
  results["pytorch"] = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                        "device": device, "score_rel_error_vs_jax": score_error, "rows": rows}
  for variant in ("released_loop", "fused_no_grad"):
    logging.info("PyTorch %s: timing %d steps after a warm-up step", variant,
                 config.torch_steps)
    times = torch_loop.time_steps(
        model, mixtures, config.num_components, variant=variant,
        step_size=float(schedule.step_sizes()[0]),
        inv_gamma2=float(1.0 / schedule.likelihood_variances()[0]),
        weight=float(schedule.likelihood_weight), num_steps=config.torch_steps, device=device)
    per_step = float(np.median(times))
    rows.append({"variant": variant, "batch": batch, "steps_timed": len(times),
                 "ms_per_step": 1e3 * per_step, "ms_per_step_min": 1e3 * min(times),
                 "gflops": flops_per_step / per_step / 1e9,
                 "seconds_full_schedule": per_step * config.report_steps,
                 "mixtures_per_s": batch / (per_step * config.report_steps)})
    measured("pytorch", rows[-1])


def add_ratios(rows, torch_rows) -> None:
  """Each row's speed-up over each PyTorch variant (their ms per step over the row's)."""
  reference = {r["variant"]: r["ms_per_step"] for r in torch_rows}
  for row in rows:
    if "ms_per_step" in row:
      for variant, ms in reference.items():
        row[f"x_torch_{variant}"] = ms / row["ms_per_step"]


def add_probe_fractions(rows, probes) -> None:
  """Each row's achieved rate as a fraction of JAX's own convolution probe in the same run
  (float32 probe for float32 rows, bfloat16 for bf16): how close the step comes to
  spending all its time in convolutions at the rate the kernel reaches alone."""
  for row in rows:
    if "tflops" not in row:
      continue
    dtype = "bfloat16" if row["precision"] == "bf16" else "float32"
    rate = measure.probe_rate(probes, "jax", "3×3 conv", dtype)
    if rate:
      row["frac_conv_probe"] = 1e3 * row["tflops"] / rate  # Both GFLOP/s after the 1e3.


def run(config, on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
  """Every table of the benchmark; `on_row(results so far)` after each measured row and
  once more at the end, when results['complete'] turns True."""
  if config.num_levels != 10:
    logging.warning("NCSN has 10 noise classes; the schedule uses %d levels.", config.num_levels)
  device = jax.local_devices()[0]
  info = {"device": device.device_kind, "platform": device.platform,
          "num_devices": jax.local_device_count(), "model": config.model,
          "jax": jax.__version__, "num_levels": config.num_levels,
          "steps_per_level": config.steps_per_level, "num_components": config.num_components,
          "report_steps": config.report_steps, "cpu_count": os.cpu_count(),
          "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
  logging.info("Benchmark on %d x %s", info["num_devices"], info["device"])
  results = {"info": info, "complete": False, "sweep": [], "precisions": [], "ablations": [],
             "baseline": None, "pytorch": None, "probes": None}

  def measured(section: str, row: dict[str, Any]) -> None:
    logging.info("%s", report.format_row(section, row))
    if on_row is not None:
      on_row(results)

  logging.info("Building the network (ngf %s) in %s", config.ngf or "published",
               ", ".join(sorted(set(config.precisions) | {config.sweep_precision})))
  networks = {p: _network(config, "bfloat16" if p == "bf16" else "float32")
              for p in set(config.precisions) | {config.sweep_precision}}
  first = config.batch_sizes[0]

  sweep = results["sweep"]
  for batch in config.batch_sizes:
    arch, fn, params = networks[config.sweep_precision]
    try:
      row = _time_sampler(config, fn, params, arch, batch, config.sweep_precision,
                          label="sweep")
    except Exception as error:  # pylint: disable=broad-except
      if not _is_out_of_memory(error):
        raise
      logging.info("Batch %d does not fit: %s", batch, str(error).splitlines()[0])
      sweep.append({"batch": batch, "precision": config.sweep_precision, "note": "out of memory"})
      measured("sweep", sweep[-1])
      break
    sweep.append(row)
    measured("sweep", row)

  precisions = results["precisions"]
  for precision in config.precisions:
    arch, fn, params = networks[precision]
    precisions.append(_time_sampler(config, fn, params, arch, first, precision,
                                    label="precision"))
    measured("precision", precisions[-1])
  if precisions:
    logging.info("Score error of each precision against float32 'highest': compiling")
    errors = _score_errors(config, config.precisions)
    for row in precisions:
      row["score_rel_error"] = errors[row["precision"]]
    logging.info("Score rel. error: %s", ", ".join(f"{p} {e:.1e}" for p, e in errors.items()))
    if on_row is not None:
      on_row(results)

  ablations = results["ablations"]
  arch, fn, params = networks[config.sweep_precision]
  for name in config.ablations:
    if name == "unroll2":
      row = _time_sampler(config, fn, params, arch, first, config.sweep_precision, unroll=2,
                          label=name)
    elif name == "per_component_calls":
      row = _time_sampler(config, fn, params, arch, first, config.sweep_precision,
                          per_component=True, label=name)
    else:
      raise ValueError(f"Unknown ablation {name!r}; known: unroll2, per_component_calls.")
    row["ablation"] = name
    ablations.append(row)
    measured("ablation", row)

  baseline = None
  if config.baseline:
    arch, fn, params = networks.get("default") or _network(config, "float32")
    schedule = _schedule(config)
    shape = (arch.image_size, arch.image_size, arch.channels)
    mixtures = _mixtures(first, shape)
    logging.info("Reference-structure loop, %d mixtures: timing %d steps", first,
                 min(config.baseline_steps or schedule.num_steps, schedule.num_steps))
    seconds, steps = measure.reference_loop(
        fn, params, mixtures, schedule, config.num_components, jax.random.key(0),
        num_steps=config.baseline_steps or None)
    per_step = seconds / steps
    baseline = {"batch": first, "steps_timed": steps, "ms_per_step": 1e3 * per_step,
                "seconds_full_schedule": per_step * config.report_steps,
                "extrapolated": steps < schedule.num_steps}
    for row in precisions + ablations + sweep[:1]:
      if "seconds" in row:
        row["speedup_vs_baseline"] = baseline["ms_per_step"] / row["ms_per_step"]
    results["baseline"] = baseline
    measured("baseline", baseline)

  arch, _, params = networks.get("default") or _network(config, "float32")
  _torch_baseline(config, arch, params, precisions[0]["batch"] if precisions else first,
                  results, measured)
  pytorch = results["pytorch"]
  if pytorch:
    add_ratios(pytorch["rows"] + sweep + precisions + ablations + ([baseline] if baseline else []),
               pytorch["rows"])
  probes = None
  if config.conv_probe:
    logging.info("Kernel probes: timing a 3×3 conv and a matmul per framework and dtype")
    probes = results["probes"] = measure.hardware_probes(config, arch)
    for row in probes:
      measured("probe", row)
  add_probe_fractions(sweep + precisions + ablations, probes)
  torch_conv = measure.probe_rate(probes, "pytorch", "3×3 conv", "float32")
  if pytorch and torch_conv:
    for row in pytorch["rows"]:
      row["frac_conv_probe"] = row["gflops"] / torch_conv
  results["complete"] = True
  if on_row is not None:
    on_row(results)
  return results
