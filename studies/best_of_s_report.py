"""The test-pair report of best-of-S separation runs: one table and one histogram figure.

    python -m studies.best_of_s_report \
        --runs="class-agnostic:default=runs/report23/test_agnostic_default,\
class-split:default=runs/report23/test_split_default" \
        --out=docs/best_of_s_test.md --plot=docs/images/best_of_s_test_histogram.png

Each run is `SET:LABEL=WORKDIR`, a finished `experiments.separate` workdir (its
separations.npz) with `config.select` and S ≥ 2 chains. For every run the table
gives, on the same mixtures: the chosen sample (mean PSNR ± 95 % interval over mixtures, the
fraction of components above 29.5 dB, the paper's NCSN figure), its chain 0 alone (chain 0's
noise is that of a one-chain run with the same seed, so this is the one-chain figure on the
same pairs), the mean single sample, the oracle best of S (needs the ground truth), the
aligned posterior mean, the Average baseline, and the wall time per 100 mixtures (the median
chunk's, so a chunk paused between sessions does not count its wait).

The figure has one row per SET: the per-component PSNR histogram of chain 0 (one chain, the
earlier default) beside that of each run's chosen sample, on shared axes.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
from absl import flags

from basis_jax.files import atomic

from basis_jax import cli, errors

from basis_jax.evaluation import report, scores

_RUNS = flags.DEFINE_string("runs", None, "Comma-separated SET:LABEL=WORKDIR entries.")
_OUT = flags.DEFINE_string("out", None, "Markdown file for the table (printed either way).")
_PLOT = flags.DEFINE_string("plot", None, "PNG path for the histogram figure.")
_THRESHOLD = 29.5  # dB: the paper's NCSN on MNIST (scores: fraction_components_above_29_5).
flags.mark_flag_as_required("runs")


def parse_runs(spec: str) -> list[tuple[str, str, str]]:
  """[(set, label, workdir)] from 'SET:LABEL=WORKDIR,...'."""
  out = []
  for entry in filter(None, (e.strip() for e in spec.split(","))):
    name, sep, workdir = entry.partition("=")
    set_name, colon, label = name.partition(":")
    if not sep or not colon or not set_name or not label or not workdir:
      raise errors.ConfigError(f"--runs entry {entry!r} is not SET:LABEL=WORKDIR.")
    out.append((set_name, label, workdir))
  if not out:
    raise errors.ConfigError("--runs names no run.")
  return out


def seconds_per_100(workdir: str) -> float:
  """Wall time per 100 mixtures: the median over the run's recorded chunks (metrics.jsonl) of
  seconds per mixture, × 100. The median, because a chunk that was paused or shared the
  cores (a run resumed across sessions) would otherwise count its wait."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return math.nan
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  rates = [r["seconds"] / (r["chunk"][1] - r["chunk"][0]) for r in records
           if "seconds" in r and "chunk" in r]
  return 100.0 * float(np.median(rates)) if rates else math.nan


def run_report(workdir: str) -> dict:
  """Per-component and per-mixture PSNRs of one best-of-S run."""
  sep = report.load_separations(workdir)
  if sep.samples is None or sep.ground_truth is None:
    raise errors.InputFileError(f"{workdir}: separations.npz has no samples or no ground "
                                "truth; this report needs a run with config.select and S ≥ 2.")
  # One producer of the scores (evaluation/scores.py); chain 0 alone is a one-sample run.
  scored, arrays = scores.separation_scores(sep.components, sep.ground_truth, sep.mixtures,
                                            sep.alphas, samples=sep.samples)
  chain0, chain0_arrays = scores.separation_scores(sep.samples[:, 0], sep.ground_truth,
                                                   sep.mixtures, sep.alphas)
  return {
      "num_mixtures": int(len(sep.components)),
      "num_samples": int(sep.samples.shape[1]),
      "select": (sep.config or {}).get("select", "unknown"),
      "chosen_components": arrays["component_psnr"][:, 0],
      "chain0_components": chain0_arrays["component_psnr"][:, 0],
      "chosen": scored["psnr"],
      "chain0": chain0["psnr"],
      "single_sample": scored["psnr_single_sample"],
      "oracle": scored["psnr_oracle"],
      "posterior_mean": scored["psnr_posterior_mean"],
      "average": scored["average_baseline_psnr"],
      "above_threshold": scored["fraction_components_above_29_5"],
      "chain0_above_threshold": chain0["fraction_components_above_29_5"],
      "seconds_per_100": seconds_per_100(workdir),
  }


def _fmt(summary: dict) -> str:
  return f"{summary['mean']:.2f} ± {summary['ci95']:.2f}"


def markdown(reports: list[tuple[str, str, dict]]) -> str:
  lines = [
      "| set | run | S | mixtures | chosen (dB) | components > 29.5 dB | chain 0 alone "
      "(one chain) | > 29.5 dB | mean single sample | oracle best of S | posterior mean | "
      "Average | s per 100 mixtures (median chunk) |",
      "|" + "---|" * 13,
  ]
  for set_name, label, r in reports:
    lines.append(
        f"| {set_name} | {label} | {r['num_samples']} | {r['num_mixtures']} | "
        f"**{_fmt(r['chosen'])}** | {100 * r['above_threshold']:.1f} % | {_fmt(r['chain0'])} | "
        f"{100 * r['chain0_above_threshold']:.1f} % | {r['single_sample']['mean']:.2f} | "
        f"{r['oracle']['mean']:.2f} | {r['posterior_mean']['mean']:.2f} | "
        f"{_fmt(r['average'])} | {r['seconds_per_100']:.0f} |")
  return "\n".join(lines) + "\n"


def histogram_figure(reports: list[tuple[str, str, dict]]):
  """One row per set: chain 0 (one chain) then each run's chosen sample."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  sets = list(dict.fromkeys(s for s, _, _ in reports))
  panels = {s: [] for s in sets}
  for set_name, label, r in reports:
    if not panels[set_name]:
      panels[set_name].append(("one chain (chain 0 of " + label + ")", r["chain0_components"]))
    panels[set_name].append((f"{label}: best of {r['num_samples']}", r["chosen_components"]))
  columns = max(len(p) for p in panels.values())
  values = np.concatenate([v.ravel() for p in panels.values() for _, v in p])
  values = values[np.isfinite(values)]
  value_range = (math.floor(values.min()), math.ceil(values.max()))
  figure, axes = plt.subplots(len(sets), columns, figsize=(4.2 * columns, 3.2 * len(sets)),
                              squeeze=False, sharex=True, sharey=True, dpi=100)
  for row, set_name in enumerate(sets):
    for col in range(columns):
      ax = axes[row, col]
      if col >= len(panels[set_name]):
        ax.axis("off")
        continue
      title, v = panels[set_name][col]
      v = np.asarray(v, np.float64).ravel()
      ax.hist(v, bins=40, range=value_range, color="#466eb4" if col else "#999999")
      ax.axvline(_THRESHOLD, color="#c0392b", lw=1, ls="--")
      ax.set_title(f"{set_name}, {title}\nmean {v.mean():.2f} dB, "
                   f"{100 * np.mean(v > _THRESHOLD):.0f} % > 29.5 (n={v.size})", fontsize=9)
      ax.set_xlabel("component PSNR (dB)")
      if col == 0:
        ax.set_ylabel("count")
  figure.tight_layout()
  return figure


def main(argv):
  del argv
  runs = parse_runs(_RUNS.value)
  reports = [(s, label, run_report(w)) for s, label, w in runs]
  table = markdown(reports)
  print(table)
  if _OUT.value:
    with atomic.atomic_open(_OUT.value, "w") as f:
      f.write(table)
  if _PLOT.value:
    from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
    figure = histogram_figure(reports)
    with atomic.atomic_open(_PLOT.value, "wb") as f:
      figure.savefig(f, format="png")
    plt.close(figure)


if __name__ == "__main__":
  cli.run(main)
