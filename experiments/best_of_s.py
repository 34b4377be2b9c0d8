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


from basis_jax import cli
from basis_jax.sampling import separation

_CONFIG, _WORKDIR, _ = cli.define_run_flags("The separation config of the run.",
                                           "The separation run's workdir.")


def main(argv):
  del argv
  summary = separation.best_of_s(_CONFIG.value, _WORKDIR.value)
  logging.info("Best of %d: %s", summary["num_samples"], json.dumps(summary))
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  cli.run(main, log_name="best_of_s.log")
