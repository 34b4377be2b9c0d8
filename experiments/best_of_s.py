"""Best of S after the fact (the paper's "10×" rows), on a finished run that kept all S samples.

    python -m experiments.separate --config=CONFIG --workdir=DIR \
        --config.sampler.num_samples=10 ...
    python -m experiments.best_of_s --config=CONFIG --workdir=DIR \
        --config.sampler.num_samples=10 ...

CONFIG is any separation config whose prior has a log-density (`Prior.log_density_fn`).

The same choice a run makes itself with `config.select='likelihood'`
(basis_jax/sampling/selection.py, one rule set), for a run made with `config.select='none'`:
per mixture, the sample with the highest Σ_j log p_σL(x_j) under the run's prior(s). Writes
DIR/best_of_s.npz (`components` [N, k, H, W, C], `index` [N], `scores` [N, S]) and
DIR/best_of_s.json: with the ground truth, the scores of `basis_jax.evaluation.scores` in the
schema metrics.json and eval.json use: `psnr` (the chosen samples), `psnr_single_sample`
(every one of the S counts as a one-sample run), `psnr_oracle` (the best of the S by PSNR),
`psnr_posterior_mean`, `average_baseline_psnr`, each a summary (mean, std, ci95, n).
"""

import json
import logging
import os

from absl import app, flags
from ml_collections import config_flags

from basis_jax.files import atomic

from basis_jax import cli, errors

from basis_jax.evaluation import report, scores
from basis_jax.sampling import schedules, selection, separation

_CONFIG = config_flags.DEFINE_config_file("config", None, "The separation config of the run.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The separation run's workdir.")
flags.mark_flags_as_required(["config", "workdir"])


def choose(config, workdir: str) -> dict:
  """Chooses the best of S in a finished run's workdir; writes and returns best_of_s.json."""
  path = os.path.join(workdir, "separations.npz")
  if not os.path.exists(path):
    raise errors.MissingFileError(f"{path} not found.", hint="run experiments.separate on this "
                                  "workdir first, with the same --config.")
  run = report.load_separations(workdir)
  samples = run.components
  if samples.shape[1] == 1:
    raise errors.ConfigError(f"{path} holds one sample per mixture (components "
                             f"{samples.shape}).", hint="run the separation with "
                             "--config.sampler.num_samples > 1.")
  schedule = schedules.from_config(config.schedule)
  priors = separation.build_priors(config, schedule, samples.shape[2])
  best, index, sample_scores = selection.best_of_s(samples, priors,
                                                   num_levels=schedule.num_levels)
  atomic.save_npz(os.path.join(workdir, "best_of_s.npz"), components=best, index=index,
                  scores=sample_scores)
  summary = {"num_mixtures": int(samples.shape[0]), "num_samples": int(samples.shape[1])}
  if run.ground_truth is not None:
    # separations.npz is in the dataset's [0, 1] space: peak 1, as experiments.evaluate.
    scored, _ = scores.separation_scores(best, run.ground_truth, run.mixtures, run.alphas,
                                         samples=samples)
    summary.update(scored)
  atomic.write_json(os.path.join(workdir, "best_of_s.json"), summary)
  return summary


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  summary = choose(_CONFIG.value, _WORKDIR.value)
  logging.info("Best of %d: %s", summary["num_samples"], json.dumps(summary))
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  cli.run(main, log_name="best_of_s.log")
