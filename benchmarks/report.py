"""How the NCSN sampler benchmark shows its results: one console line per measured row,
the markdown report, and the two files a run keeps (benchmark.json, benchmark.md)."""

from __future__ import annotations

import os
from typing import Any

from basis_jax.files import atomic
from benchmarks import measure


# A measured row as one console line: what it is, then its figures with fixed decimals.
_ROW_NAME = (("ablation", "{}"), ("variant", "{}"), ("framework", "{}"), ("kernel", "{}"),
             ("dtype", "{}"), ("precision", "{}"), ("batch", "{} mixtures"),
             ("workers", "on {}"))
_ROW_FIGURES = (("compile_s", "compile {:.1f} s"), ("seconds", "{:.3f} s/batch"),
                ("steps_timed", "{} steps timed"), ("ms_per_step", "{:.2f} ms/step"),
                ("ms", "{:.3f} ms"), ("mixtures_per_s", "{:.3f} mixtures/s"),
                ("gflops", "{:.2f} GFLOP/s"), ("tflops", "{:.4f} TFLOP/s"),
                ("peak_memory_gib", "peak {:.3f} GiB"),
                ("seconds_full_schedule", "{:.1f} s per L×T"),
                ("score_rel_error", "score rel. err. {:.1e}"), ("note", "{}"))


def format_row(section: str, row: dict[str, Any]) -> str:
  """'sweep      bf16, 50 mixtures        | compile 12.3 s | 0.532 s/batch | ...'."""
  name = ", ".join(fmt.format(row[key]) for key, fmt in _ROW_NAME if row.get(key) is not None)
  figures = [fmt.format(row[key]) for key, fmt in _ROW_FIGURES if row.get(key) is not None]
  return " | ".join([f"{section:<10} {name:<28}"] + figures)


def save(results: dict[str, Any], workdir: str) -> None:
  """DIR/benchmark.json and DIR/benchmark.md of the results so far, each replaced whole
  (a run stopped at any moment leaves both files readable, with the rows measured)."""
  atomic.write_json(os.path.join(workdir, "benchmark.json"), results)
  with atomic.atomic_open(os.path.join(workdir, "benchmark.md"), "w") as f:
    f.write(markdown(results) + "\n")


TIMING_COLUMNS = [("precision", "precision"), ("batch", "mixtures"), ("compile_s", "compile s"),
                  ("seconds", "s / batch"), ("ms_per_step", "ms / step"),
                  ("mixtures_per_s", "mixtures/s"), ("tflops", "TFLOP/s"),
                  ("frac_bf16_peak", "of bf16 peak"), ("frac_own_floor", "of own floor"),
                  ("frac_conv_probe", "of conv probe"),
                  ("peak_memory_gib", "peak GiB"), ("speedup_vs_baseline", "× baseline"),
                  ("seconds_full_schedule", "s / L×T"),
                  ("x_torch_released_loop", "× torch loop"),
                  ("x_torch_fused_no_grad", "× torch no-grad")]


def markdown(results) -> str:
  """The markdown tables of `results` (complete or not)."""
  info = results["info"]
  parts = [f"# BASIS-NCSN sampler benchmark: {info['model']}, {info['num_devices']} × "
           f"{info['device']} (jax {info['jax']}), L={info['num_levels']}, "
           f"T={info['steps_per_level']}, k={info['num_components']}", ""]
  info_line = (f"{info['cpu_count']} CPUs, load average at start {info['load_average']}, "
               f"XLA_FLAGS={info['xla_flags']!r}; s / L×T extrapolates ms / step to "
               f"{info['report_steps']} steps.")
  parts += [info_line, ""]
  if not results.get("complete", True):
    parts += ["**Incomplete**: the run stopped (or is still running); these are the rows "
              "measured so far.", ""]
  pytorch = results.get("pytorch")
  if pytorch:
    parts += [f"## PyTorch {pytorch['torch']} on {pytorch['device']} ({pytorch['threads']} "
              "CPU threads), same weights "
              f"(score rel. diff. vs JAX {pytorch['score_rel_error_vs_jax']:.1e}), "
              "one level, per step", "",
              measure.markdown_table(pytorch["rows"], [
                  ("variant", "variant"), ("batch", "mixtures"), ("steps_timed", "steps timed"),
                  ("ms_per_step", "ms / step"), ("ms_per_step_min", "fastest step ms"),
                  ("gflops", "GFLOP/s"), ("frac_conv_probe", "of conv probe"),
                  ("seconds_full_schedule", "s / L×T"), ("x_torch_released_loop", "× torch loop"),
                  ("x_torch_fused_no_grad", "× torch no-grad")]), ""]
  if results.get("probes"):
    parts += ["## Kernel probes (one 3×3 conv at the network's widest shape; a square "
              "matmul per device)", "",
              measure.markdown_table(results["probes"], [
                  ("framework", "framework"), ("kernel", "kernel"), ("dtype", "dtype"),
                  ("workers", "run on"), ("shape", "shape"), ("ms", "ms"),
                  ("gflops", "GFLOP/s")]), ""]
  baseline = results.get("baseline")
  if baseline:
    parts += ["## Reference-structure loop (per-component jitted score, eager update)", "",
              measure.markdown_table([baseline], [
                  ("batch", "mixtures"), ("steps_timed", "steps timed"),
                  ("ms_per_step", "ms / step"), ("seconds_full_schedule", "s / batch (L×T)"),
                  ("extrapolated", "extrapolated"), ("x_torch_released_loop", "× torch loop"),
                  ("x_torch_fused_no_grad", "× torch no-grad")]), ""]
  parts += ["## Batch sweep", "", measure.markdown_table(
      results["sweep"], TIMING_COLUMNS + [("memory_kind", "memory"), ("note", "note")]), ""]
  parts += ["## Precision modes (first batch size)", "", measure.markdown_table(
      results["precisions"], TIMING_COLUMNS + [("score_rel_error", "score rel. err.")]), ""]
  if results["ablations"]:
    parts += ["## Ablations (first batch size)", "", measure.markdown_table(
        results["ablations"], [("ablation", "ablation")] + TIMING_COLUMNS), ""]
  return "\n".join(parts)

