"""Best-of-S on held-out mixtures: PSNR of every selection scheme against its cost.

    python -m experiments.separate --config=configs/mnist_unet.py:heldout \
        --config.data.path=/path/to/mnist --workdir=runs/frontier_T50 \
        --config.num_mixtures=100 --config.batch_size=25 \
        --config.sampler.num_samples=8 --config.sampler.snapshots=True
    (again with --config.schedule.steps_per_level=20 --workdir=runs/frontier_T20)
    python -m studies.best_of_s_frontier --config=configs/mnist_unet.py:heldout \
        --config.data.path=/path/to/mnist --runs=runs/frontier_T50,runs/frontier_T20 \
        --out=runs/frontier.json

One run of S independent chains with their per-level snapshots holds every scheme with at
most S chains: a chain's noise depends only on (mixture, chain), so the first S' chains are a
run with S' samples, and pruning after level P to the r best (`config.sampler.prune_after`,
`survivors`) finishes exactly those r chains. The script scores the snapshots as the sampler
would (likelihood of the Tweedie-denoised state after level P; of the clamped samples at the
end) and prints, per scheme: mean PSNR ± 95 % interval of the chosen sample, the single
sample and the oracle, and the cost in network evaluations per mixture relative to one chain.
Wall time is measured by `--time`: the real compiled separator of each scheme on
`--time_mixtures` mixtures after compilation.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging
from ml_collections import config_flags

from basis_jax.files import atomic, sharding

from basis_jax import cli

from basis_jax.priors import likelihood

from basis_jax.evaluation import metrics

from basis_jax.sampling import selection, separation
from studies.best_of_s_schemes import PRUNE_AFTER, Scheme, evaluate_scheme, schemes

_CONFIG = config_flags.DEFINE_config_file("config", None, "The runs' separation config.",
                                          lock_config=False)
_RUNS = flags.DEFINE_list("runs", None, "Workdirs of S-chain runs with snapshots (one per T).")
_OUT = flags.DEFINE_string("out", "", "Write the table as JSON here.")
_PLOT = flags.DEFINE_string("plot", "", "Write PSNR against cost as a PNG here.")
_TIME = flags.DEFINE_bool("time", False, "Measure wall time per mixture of every scheme.")
_TIME_MIXTURES = flags.DEFINE_integer("time_mixtures", 10, "Mixtures per timing run.")
_CHUNK = flags.DEFINE_integer("chunk", 16, "Mixtures per compiled scoring call.")
_MERGE = flags.DEFINE_list("merge", [], "Instead of --runs: tables (--out JSON) to print and "
                           "plot together.")
flags.mark_flags_as_required(["config"])

def run_scores(job, run, chunk):
  """(final [N, S], early {P: [N, S]}) likelihood scores, as the sampler computes them."""
  prior = job.priors[0]
  rank = selection.make_rank_fn("likelihood", job.priors, job.mixing, job.schedule.num_levels)
  clamp = job.options.clamp
  samples, snapshots, mixtures = run["components"], run["snapshots"], run["mixtures"]
  n, s = samples.shape[:2]
  obs = np.repeat(prior.to_prior(mixtures), s, axis=0)

  def rank_rows(x, m):  # x [c, S, k, H, W, C]
    return rank(prior.params, x.reshape((-1,) + x.shape[2:]), m).reshape(x.shape[:2])

  final = sharding.map_chunks(jax.jit(lambda x, m: rank_rows(x, m)),
                              [prior.to_prior(samples), obs.reshape((n, s) + obs.shape[1:])],
                              chunk)
  early = {}
  for level in range(max(PRUNE_AFTER)):
    sigma = job.schedule.sigmas[level]

    def denoised_rank(x, m, level=level, sigma=sigma):
      flat = x.reshape((-1,) + x.shape[3:])  # [c·S·k, H, W, C]
      score = prior.score_fn(prior.select_level(prior.params, level), flat, level)
      den = (flat + sigma ** 2 * score).reshape(x.shape)
      if clamp is not None:
        den = jnp.clip(den, *clamp)
      return rank_rows(den, m)

    early[level + 1] = sharding.map_chunks(jax.jit(denoised_rank),
                                           [prior.to_prior(snapshots[:, :, level]),
                                            obs.reshape((n, s) + obs.shape[1:])], chunk)
  return final, early


def time_scheme(config, scheme: Scheme, num: int) -> float:
  """Seconds per mixture of the real separator for `scheme` (compiled first)."""
  config = config.copy_and_resolve_references()
  for key, value in scheme.overrides().items():
    target = config
    *path, last = key.split(".")
    for part in path:
      target = target[part]
    target[last] = value
  config.num_mixtures = num
  config.sampler.snapshots = False
  job = separation.build_job(config)
  mixture_set = separation.load_mixtures(config, job)
  mixtures = jnp.asarray(separation.mixtures_to_prior_space(mixture_set.mixtures[:num], job))
  fn = jax.jit(job.separate).lower(job.params, mixtures, jax.random.key(0)).compile()
  start = time.time()
  jax.block_until_ready(fn(job.params, mixtures, jax.random.key(0)))
  return (time.time() - start) / num


def main(argv):
  del argv
  config = _CONFIG.value
  rows = []
  for path in _MERGE.value:
    with open(path) as f:
      rows += json.load(f)["rows"]
  for workdir in _RUNS.value or ():
    with open(os.path.join(workdir, "config.json")) as f:
      steps = json.load(f)["schedule"]["steps_per_level"]
    run_config = config.copy_and_resolve_references()
    run_config.schedule.steps_per_level = steps
    job = separation.build_job(run_config)
    with np.load(os.path.join(workdir, "separations.npz")) as f:
      run = {name: f[name] for name in ("components", "snapshots", "mixtures", "ground_truth")}
    if run["components"].ndim != 6 or "snapshots" not in run:
      raise ValueError(f"{workdir} needs num_samples > 1, select='none' and snapshots.")
    n, s = run["components"].shape[:2]
    per_sample = selection.per_sample_psnr(run["components"], run["ground_truth"], 1.0)
    final, early = run_scores(job, run, _CHUNK.value)
    num_sigmas = likelihood.settings_from_config(config.prior.get("likelihood")).num_sigmas
    levels = job.schedule.num_levels
    for scheme in schemes(steps, s, levels):
      psnr = evaluate_scheme(scheme, per_sample, final, early)
      row = {"scheme": scheme.name, **dataclasses.asdict(scheme), "num_mixtures": n,
             "cost_chains": scheme.cost(levels, num_sigmas) / (levels * 50),
             **{name: metrics.summarize(v) for name, v in psnr.items()},
             "above_29_5": float(np.mean(psnr["chosen"] > 29.5))}
      if _TIME.value:
        row["seconds_per_mixture"] = time_scheme(run_config, scheme, _TIME_MIXTURES.value)
      rows.append(row)
      logging.info("%-26s cost %5.2f  chosen %.2f ± %.2f  single %.2f  oracle %.2f%s",
                   scheme.name, row["cost_chains"], row["chosen"]["mean"], row["chosen"]["ci95"],
                   row["single_sample"]["mean"], row["oracle"]["mean"],
                   f"  {row['seconds_per_mixture']:.2f} s/mixture" if _TIME.value else "")
  print(markdown(rows))
  if _OUT.value:
    atomic.write_json(_OUT.value, {"rows": rows})
  if _PLOT.value:
    plot(rows, _PLOT.value)


def markdown(rows) -> str:
  timed = "seconds_per_mixture" in rows[0]
  head = ("| scheme | cost (chains of T=50) |" + (" s / mixture |" if timed else "")
          + " chosen (dB) | single sample | oracle | mixtures > 29.5 dB |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for r in rows:
    lines.append(f"| {r['scheme']} | {r['cost_chains']:.2f} |"
                 + (f" {r['seconds_per_mixture']:.2f} |" if timed else "")
                 + f" {r['chosen']['mean']:.2f} ± {r['chosen']['ci95']:.2f} |"
                 f" {r['single_sample']['mean']:.2f} | {r['oracle']['mean']:.2f} |"
                 f" {100 * r['above_29_5']:.0f} % |")
  return "\n".join(lines)


def plot(rows, path):
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  from basis_jax.evaluation import visualize  # pylint: disable=import-outside-toplevel
  x_key = "seconds_per_mixture" if "seconds_per_mixture" in rows[0] else "cost_chains"
  fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
  for (steps, pruned), group in itertools.groupby(
      sorted(rows, key=lambda r: (r["steps"], bool(r["prune_after"]), r[x_key])),
      key=lambda r: (r["steps"], bool(r["prune_after"]))):
    group = list(group)
    ax.plot([r[x_key] for r in group], [r["chosen"]["mean"] for r in group],
            "s" if pruned else "o-", label=f"T={steps}, " + ("pruned" if pruned else "S chains"))
  ax.axhline(29.5, color="gray", ls="--", lw=0.8, label="paper NCSN 29.5 dB")
  ax.set_xlabel("seconds per mixture (this CPU)" if x_key == "seconds_per_mixture"
                else "cost (network evaluations, in chains of T=50)")
  ax.set_ylabel("PSNR of the chosen sample (dB)")
  ax.set_title("Best-of-S by the prior's likelihood, held-out MNIST mixtures")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  visualize.save_figure(path, fig)


if __name__ == "__main__":
  cli.run(main, log_name=None)
