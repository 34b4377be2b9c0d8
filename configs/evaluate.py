"""Scoring a finished separation run (experiments/evaluate.py), as the paper does.

  python -m experiments.evaluate --config=configs/evaluate.py --config.workdir=DIR
  python -m experiments.evaluate --config=configs/evaluate.py --config.workdir=DIR \
      --config.ssim=True --config.inception=required \
      --config.inception_weights=~/.cache/basis_jax/inception_fid.npz

Fields:
  workdir: the separation run's directory (holds separations.npz and config.json); the
    results go beside them: eval.json, eval.md, psnr_histogram.png. Required.
  ssim: also report SSIM (11×11 Gaussian window, σ = 1.5), per component and mixture.
  inception: IS/FID with the FID Inception network: 'auto' (when its weights exist; the
    reason is recorded otherwise), 'required' (fail without them) or 'never'.
  inception_weights: the converted Inception .npz (`python -m convert_weights.inception`);
    empty: $BASIS_INCEPTION_WEIGHTS, then ~/.cache/basis_jax/inception_fid.npz.
  reference: the FID reference images. source empty: the run's own dataset (config.json),
    train split. Otherwise a `basis_jax.data` source ('mnist', 'cifar10', 'image_folder',
    'tfds', ...) with its local path (empty: through tfds) and split.
  stats_cache_dir: where the reference's Inception statistics are cached (keyed by the
    data and the weights' digest).
  batch_size: images per Inception forward pass.
  histogram_bins: bins of the per-component PSNR histogram (paper Figure 6).
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.workdir = ""
  config.ssim = False
  config.inception = "auto"
  config.inception_weights = ""
  config.reference = ml_collections.ConfigDict({"source": "", "path": "", "split": "train"})
  config.stats_cache_dir = "~/.cache/basis_jax/fid_stats"
  config.batch_size = 100
  config.histogram_bins = 40
  return config
