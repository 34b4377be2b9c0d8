r"""Scores a separation run as the paper does (Table 2 PSNR; Tables 3-4 IS / FID).

  python -m experiments.evaluate --config=configs/evaluate.py --config.workdir=DIR

Reads DIR/separations.npz (and config.json) written by experiments/separate.py and writes
DIR/eval.json, DIR/eval.md and DIR/psnr_histogram.png. configs/evaluate.py documents every
field (SSIM, Inception weights, FID reference, batch size); it is also the default
--config. IS/FID run when the converted Inception weights exist (see docs/report.md).
"""

import logging
import os

from absl import app
from ml_collections import config_flags

from basis_jax import cli, errors

from basis_jax.evaluation import report
from configs import evaluate as evaluate_config

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                               "configs", "evaluate.py")
_CONFIG = config_flags.DEFINE_config_file("config", os.path.normpath(_DEFAULT_CONFIG),
                                          "Evaluation config file.", lock_config=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  if not config.workdir:
    raise errors.ConfigError("config.workdir is empty: which separation run to score?",
                             hint="pass --config.workdir=DIR (the experiments.separate workdir).")
  reference = None
  if config.reference.source:
    reference = {"source": config.reference.source, "path": config.reference.path or None,
                 "split": config.reference.split}
  results = report.evaluate(
      config.workdir, ssim=config.ssim, inception=config.inception,
      inception_weights=config.inception_weights or None, reference_data=reference,
      stats_cache_dir=config.stats_cache_dir, batch_size=config.batch_size,
      histogram_bins=config.histogram_bins)
  logging.info("\n%s", report.markdown_table(results))


if __name__ == "__main__":
  cli.run(main, log_name="evaluate.log", field_help=evaluate_config.FIELD_HELP)
