"""The figures a run writes, read as a person reads them: labels, order, size."""

import numpy as np

from basis_jax import separation, visualize


def test_separation_figure_labels_columns_and_orders_by_the_matching():
  rng = np.random.default_rng(0)
  truth = rng.uniform(size=(3, 2, 8, 8, 1)).astype(np.float32)
  mixtures = truth.sum(1)
  swapped = truth[:, ::-1]  # The sampler's order need not follow the truth's.
  figure = visualize.separation_figure(mixtures, swapped, truth)
  axes = np.asarray(figure.axes).reshape(3, 5)
  assert [a.get_title() for a in axes[0]] == [
      "mixture", "truth 1", "truth 2", "separated 1", "separated 2"]
  for row in range(3):
    for j in range(2):
      truth_tile = axes[row, 1 + j].get_images()[0].get_array()
      separated_tile = axes[row, 3 + j].get_images()[0].get_array()
      np.testing.assert_array_equal(separated_tile, truth_tile)
  width, height = figure.get_size_inches() * figure.dpi
  assert width >= 500 and height >= 300  # MNIST's 304x484 px grid was too small to read.


def test_summary_line():
  psnr = {"mean": 27.51, "ci95": 0.83}
  average = {"mean": 14.66, "ci95": 0.41}
  line = separation.summary_line({"num_mixtures": 20, "psnr": psnr,
                                  "average_baseline_psnr": average})
  assert line == ("20 mixtures: BASIS 27.5 ± 0.8 dB vs Average 14.7 ± 0.4 dB PSNR "
                  "(mean ± 95 % interval)")
