"""Scoring a finished separation run (experiments/evaluate.py), as the paper does.

  python -m experiments.evaluate --config=configs/evaluate.py --workdir=DIR
  python -m experiments.evaluate --config=configs/evaluate.py --workdir=DIR \
      --config.ssim=True --config.inception=required \
      --config.inception_weights=~/.cache/basis_jax/inception_fid.npz

DIR (the flag --workdir, as in every program) is the separation run's directory: eval.json,
eval.md and psnr_histogram.png go beside its separations.npz. FIELD_HELP below gives one
line of meaning per field (`experiments.evaluate --help` prints them beside the values).
The reference images of FID: with reference.source empty, the run's own dataset
(config.json), train split; otherwise a `basis_jax.files.data` source ('mnist', 'cifar10',
'image_folder', 'tfds', ...) with its local path (empty: through tfds) and split. What
every output key means: docs/outputs.md.
"""

import ml_collections

FIELD_HELP = {
    "ssim": "also report SSIM (11x11 Gaussian window, sigma 1.5)",
    "inception": "IS/FID: 'auto' (when the Inception weights exist) | 'required' | 'never'",
    "inception_weights": "converted Inception .npz (empty: $BASIS_INCEPTION_WEIGHTS, then "
                         "~/.cache/basis_jax/inception_fid.npz)",
    "reference.source": "FID reference dataset (empty: the run's own, train split)",
    "reference.path": "local files of the reference dataset (empty: through tfds)",
    "reference.split": "split of the reference dataset",
    "stats_cache_dir": "cache of the reference's Inception statistics",
    "batch_size": "images per Inception forward pass",
    "histogram_bins": "bins of the per-component PSNR histogram (paper Figure 6)",
    "classifier": "CIFAR-10 runs: classifier score, FD and KID in a classifier's features "
                  "(not IS/FID): 'auto' (training/classifier_features24/classifier.npz when "
                  "present) | a classifier .npz | 'never'",
}


def get_config():
  config = ml_collections.ConfigDict()
  config.ssim = False
  config.inception = "auto"
  config.inception_weights = ""
  config.reference = ml_collections.ConfigDict({"source": "", "path": "", "split": "train"})
  config.stats_cache_dir = "~/.cache/basis_jax/fid_stats"
  config.batch_size = 100
  config.histogram_bins = 40
  config.classifier = "auto"
  return config
