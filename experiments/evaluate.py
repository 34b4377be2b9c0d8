r"""Scores a separation run as the paper does (Table 2 PSNR; Tables 3-4 IS / FID).

  python -m experiments.evaluate --workdir=DIR [--config=configs/evaluate.py]

Reads DIR/separations.npz (and config.json) written by experiments/separate.py and writes
DIR/eval.json, DIR/eval.md and DIR/psnr_histogram.png. configs/evaluate.py documents every
field (SSIM, Inception weights, FID reference, batch size); it is also the default
--config. IS/FID run when the converted Inception weights exist (see docs/evaluation.md).
"""

import logging
import os


from basis_jax import cli

from basis_jax.evaluation import report
from configs import evaluate as evaluate_config

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                               "configs", "evaluate.py")
_CONFIG, _WORKDIR, _ = cli.define_run_flags(
    "Evaluation config file (default: configs/evaluate.py).",
    "The separation run to score (the workdir of experiments.separate); eval.json, eval.md "
    "and psnr_histogram.png go beside its separations.npz.", config_required=False)


def main(argv):
  del argv
  config = _CONFIG.value
  reference = None
  if config.reference.source:
    reference = {"source": config.reference.source, "path": config.reference.path or None,
                 "split": config.reference.split}
  results = report.evaluate(
      _WORKDIR.value, ssim=config.ssim, inception=config.inception,
      inception_weights=config.inception_weights or None, reference_data=reference,
      stats_cache_dir=config.stats_cache_dir, batch_size=config.batch_size,
      histogram_bins=config.histogram_bins, classifier=config.classifier)
  logging.info("\n%s", report.markdown_table(results))


if __name__ == "__main__":
  cli.run(main, log_name="evaluate.log", field_help=evaluate_config.FIELD_HELP,
          default_config=os.path.normpath(_DEFAULT_CONFIG))
