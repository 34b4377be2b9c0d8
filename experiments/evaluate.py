r"""Scores a separation run as the paper does (Table 2 PSNR; Tables 3-4 IS / FID).

  python -m experiments.evaluate --workdir=workdirs/mnist_ncsn

Reads WORKDIR/separations.npz (and config.json) written by experiments/separate.py and
writes WORKDIR/eval.json, WORKDIR/eval.md and WORKDIR/psnr_histogram.png. IS/FID run when
the converted Inception weights exist (see docs/evaluation.md); FID compares with the
run's dataset, train split, unless --reference_source is given.
"""

from absl import app, flags, logging

from basis_jax import evaluation

_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory holding separations.npz.',
                               required=True)
_SSIM = flags.DEFINE_bool('ssim', False, 'Also report SSIM.')
_INCEPTION = flags.DEFINE_enum('inception', 'auto', ['auto', 'required', 'never'],
                               'IS/FID: when the weights exist, always, or never.')
_WEIGHTS = flags.DEFINE_string('inception_weights', None,
                               'Converted Inception .npz (default $BASIS_INCEPTION_WEIGHTS, '
                               'then ~/.cache/basis_jax/inception_fid.npz).')
_REF_SOURCE = flags.DEFINE_string('reference_source', None,
                                  "FID reference dataset ('cifar10', 'image_folder', ...).")
_REF_PATH = flags.DEFINE_string('reference_path', None, 'Local files for it (or tfds).')
_REF_SPLIT = flags.DEFINE_string('reference_split', 'train', 'Its split.')
_STATS_CACHE = flags.DEFINE_string('stats_cache_dir', '~/.cache/basis_jax/fid_stats',
                                   'Where reference statistics are cached.')
_BATCH = flags.DEFINE_integer('batch_size', 100, 'Inception batch size.')


def main(argv):
  del argv
  reference = None
  if _REF_SOURCE.value:
    reference = {'source': _REF_SOURCE.value, 'path': _REF_PATH.value,
                 'split': _REF_SPLIT.value}
  results = evaluation.evaluate(
      _WORKDIR.value, ssim=_SSIM.value, inception=_INCEPTION.value,
      inception_weights=_WEIGHTS.value, reference_data=reference,
      stats_cache_dir=_STATS_CACHE.value, batch_size=_BATCH.value)
  logging.info('\n%s', evaluation.markdown_table(results))


if __name__ == '__main__':
  app.run(main)
