"""PSNR against cost: one separation config under several settings, one table.

  python -m studies.psnr_sweep --config=configs/mnist_unet.py:heldout \
      --config.data.path=/path/to/mnist --config.num_mixtures=50 --workdir=runs/sweep \
      --settings='T10:schedule.steps_per_level=10' \
      --settings='T20:schedule.steps_per_level=20' \
      --settings='raw:prior.use_ema=False'

Each --settings is NAME:key=value[,key=value...] over the config (values parsed as Python
literals); each runs `basis_jax.sampling.separation.run` in WORKDIR/NAME (so a re-run resumes and
skips finished settings) on the same mixtures. The table: PSNR mean ± 95% interval, the
difference to the first setting mixture by mixture (mean ± 95% interval of the paired
differences, and on how many mixtures the setting is better: settings run on the same
mixtures, so the spread between mixtures cancels; what is left is the spread between
chains, which on CIFAR-10 is as wide as the PSNR interval itself), the fraction of
components above 29.5 dB, the Average baseline on the same mixtures, network evaluations
per component (levels × steps × samples) and separation wall time (from
WORKDIR/NAME/timing.json, measured when that setting ran). Written to WORKDIR/sweep.md.
"""

import ast
import dataclasses
import json
import os
import time

from absl import flags, logging
import numpy as np

from basis_jax import cli

from basis_jax.files import atomic

from basis_jax.evaluation import report, metrics

from basis_jax.sampling import sampler, separation

_CONFIG, _WORKDIR, _ = cli.define_run_flags("Separation config file.",
                                           "One subdirectory per setting.")
_SETTINGS = flags.DEFINE_multi_string("settings", [], "NAME:key=value[,key=value...]")


def parse_setting(text: str):
  name, _, body = text.partition(":")
  overrides = {}
  for item in filter(None, body.split(",")):
    key, _, value = item.partition("=")
    try:
      overrides[key.strip()] = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
      overrides[key.strip()] = value.strip()
  return name.strip(), overrides


def _apply(config, overrides):
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for key, value in overrides.items():
      *path, leaf = key.split(".")
      node = config
      for part in path:
        node = node[part]
      if leaf not in node:
        raise KeyError(f"config has no field {key!r}")
      node[leaf] = type(node[leaf])(value) if isinstance(node[leaf], tuple) else value
  return config


def _row(name, config, workdir):
  """PSNR of one setting's run; with several samples, the one of smallest residual."""
  sep = report.load_separations(workdir)
  if sep.components.shape[1] > 1:
    with np.load(os.path.join(workdir, "separations.npz")) as f:
      residual = f["residual_norm"]
    # The choice config.select='residual' makes in a run: the smallest ‖g(x) − m‖.
    index = np.argmin(np.where(np.isfinite(residual), residual, np.inf), axis=1)
    chosen = sep.components[np.arange(len(index)), index]
    sep = dataclasses.replace(sep, components=chosen[:, None])
  results, arrays = report.psnr_results(sep)
  s = config.schedule
  levels = len(s.sigmas) if s.sigmas else s.num_levels
  with open(os.path.join(workdir, "timing.json")) as f:
    seconds = json.load(f)["seconds"]
  return {"name": name, "psnr": results["psnr"],
          "above_29_5": results["fraction_components_above_29_5"],
          "baseline": results["average_baseline_psnr"],
          "evals": levels * s.steps_per_level * config.sampler.num_samples,
          "seconds": seconds, "n": len(arrays["mixture_psnr"]),
          "per_mixture": arrays["mixture_psnr"],
          "indices": None if sep.indices is None else np.asarray(sep.indices)}


def paired_difference(row, first):
  """Mean ± 95% interval of row's per-mixture PSNR minus first's, and on how many mixtures
  row is better ('better'); None unless both ran on the same mixtures (same count and,
  where recorded, the same image indices)."""
  if (row["per_mixture"].shape != first["per_mixture"].shape
      or not np.array_equal(row["indices"], first["indices"])):  # None == None only.
    return None
  change = row["per_mixture"] - first["per_mixture"]
  return {**metrics.summarize(change), "better": int(np.sum(change > 0))}


def markdown(rows) -> str:
  """The sweep table; the paired column compares each setting with the first that ran."""
  ran = [r for r in rows if "diverged" not in r]
  first = ran[0] if ran else None
  title = f"Δ vs {first['name']} (paired)" if first else "Δ (paired)"
  lines = [f"| setting | PSNR (dB) | {title} | > 29.5 dB | Average baseline | evals/component "
           "| wall s | n |", "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    if "diverged" in r:
      lines.append(f"| {r['name']} | diverged | | | | | | |")
      continue
    diff = None if r is first else paired_difference(r, first)
    delta = ("reference" if r is first else "—" if diff is None
             else f"{diff['mean']:+.2f} ± {diff['ci95']:.2f}, better on {diff['better']}/"
                  f"{diff['n']}")
    lines.append(f"| {r['name']} | {r['psnr']['mean']:.2f} ± {r['psnr']['ci95']:.2f} | "
                 f"{delta} | {100 * r['above_29_5']:.0f}% | {r['baseline']['mean']:.2f} | "
                 f"{r['evals']} | {r['seconds']:.0f} | {r['n']} |")
  return "\n".join(lines)


def main(argv):
  del argv
  base = _CONFIG.value
  rows = []
  for text in _SETTINGS.value or ["default:"]:
    name, overrides = parse_setting(text)
    config = _apply(base, overrides)
    workdir = os.path.join(_WORKDIR.value, name)
    if not os.path.exists(os.path.join(workdir, "timing.json")):
      start = time.time()
      try:
        separation.run(config, workdir, log_file=True)
      except sampler.SamplingDivergedError as e:  # A setting that diverges is a result too.
        logging.warning("%s diverged: %s", name, e)
        rows.append({"name": name, "diverged": str(e).split(";")[0]})
        continue
      atomic.write_json(os.path.join(workdir, "timing.json"),
                        {"seconds": time.time() - start, "overrides": overrides})
    rows.append(_row(name, config, workdir))
    logging.info("%s: %.2f dB", name, rows[-1]["psnr"]["mean"])
  table = markdown(rows)
  with atomic.atomic_open(os.path.join(_WORKDIR.value, "sweep.md"), "w") as f:
    f.write(table + "\n")
  print(table)


if __name__ == "__main__":
  cli.run(main, cpu_device_per_core=True)
