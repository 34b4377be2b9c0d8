"""The figures a run writes, read as a person reads them: labels, order, size."""

import numpy as np
import pytest

from basis_jax.sampling import separation

from basis_jax.evaluation import visualize


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


def test_the_grid_says_how_many_of_the_mixtures_it_shows():
  truth = np.random.default_rng(1).uniform(size=(20, 2, 8, 8, 1)).astype(np.float32)
  figure = visualize.separation_figure(truth.sum(1), truth, truth, max_rows=8)
  assert figure._suptitle.get_text() == "first 8 of 20 mixtures"  # pylint: disable=protected-access
  figure = visualize.separation_figure(truth[:3].sum(1), truth[:3], truth[:3])
  assert figure._suptitle.get_text() == "all 3 mixtures"  # pylint: disable=protected-access


def test_colorization_says_gray_original_colorized():
  original = np.random.default_rng(2).uniform(size=(4, 1, 8, 8, 3)).astype(np.float32)
  gray = original[:, 0].mean(-1, keepdims=True)
  figure = visualize.separation_figure(gray, original, original,
                                       labels=visualize.COLORIZATION_LABELS)
  axes = np.asarray(figure.axes).reshape(4, 3)
  assert [a.get_title() for a in axes[0]] == ["gray", "original", "colorized"]
  assert figure._suptitle.get_text() == "all 4 images"  # pylint: disable=protected-access
  line = separation.summary_line({
      "num_mixtures": 4, "baseline": "gray image", "image_shape": [8, 8, 3],
      "psnr": {"mean": 22.56, "ci95": 0.25}, "average_baseline_psnr": {"mean": 26.37, "ci95": 0.3}})
  assert line == ("4 images colorized: colorized 22.6 ± 0.2 dB vs the gray image 26.4 ± 0.3 dB "
                  "PSNR against the original (mean ± 95 % interval)")


def test_an_rgb_sum_says_psnr_is_not_its_measure():
  line = separation.summary_line({
      "num_mixtures": 5, "baseline": "Average", "image_shape": [32, 32, 3],
      "psnr": {"mean": 14.4, "ci95": 0.2}, "average_baseline_psnr": {"mean": 14.5, "ci95": 0.2}})
  assert line.endswith("(mean ± 95 % interval); on natural images PSNR is not the measure "
                       "(docs/outputs.md)")


def test_component_pngs_are_named_after_their_mixture(tmp_path):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  components = np.random.default_rng(3).uniform(size=(13, 2, 8, 8, 1)).astype(np.float32)
  assert visualize.save_component_pngs(str(tmp_path), components) == 26
  picture = np.asarray(Image.open(tmp_path / "mixture_00012_component_2.png"))
  np.testing.assert_array_equal(picture, (components[12, 1, ..., 0] * 255 + 0.5).astype(np.uint8))
  samples = np.zeros((2, 3, 1, 8, 8, 3), np.float32)
  assert visualize.save_component_pngs(str(tmp_path / "s"), samples) == 6
  assert (tmp_path / "s" / "mixture_00001_sample_3_component_1.png").exists()


def test_the_title_stays_above_the_column_titles():
  truth = np.random.default_rng(4).uniform(size=(20, 2, 8, 8, 1)).astype(np.float32)
  figure = visualize.separation_figure(truth.sum(1), truth, truth, max_rows=8)
  figure.canvas.draw()
  renderer = figure.canvas.get_renderer()
  title_bottom = figure._suptitle.get_window_extent(renderer).y0  # pylint: disable=protected-access
  for axes in figure.axes[:5]:
    assert axes.title.get_window_extent(renderer).y1 <= title_bottom


def _figure_texts(figure):
  return {text.get_text() for text in figure.findobj(lambda a: hasattr(a, "get_text"))}


def test_posterior_samples_figure_rows_are_components_columns_samples():
  rng = np.random.default_rng(5)
  truth = rng.uniform(size=(2, 8, 8, 1)).astype(np.float32)
  samples = np.stack([truth, truth[::-1], truth * 0.9])  # sample 2 in the other order
  figure = visualize.posterior_samples_figure(truth.sum(0), samples, truth,
                                              title="3 posterior samples of mixture 4")
  axes = np.asarray(figure.axes).reshape(2, 5)
  assert [a.get_title() for a in axes[0]] == ["mixture", "truth", "sample 1", "sample 2",
                                              "sample 3"]
  assert [a.get_ylabel() for a in axes[:, 0]] == ["component 1", "component 2"]
  assert "3 posterior samples of mixture 4" in _figure_texts(figure)
  for row in range(2):  # Each row holds one source across the samples, matched to the truth.
    truth_tile = axes[row, 1].get_images()[0].get_array()
    for col in (2, 3):
      np.testing.assert_array_equal(axes[row, col].get_images()[0].get_array(), truth_tile)
  assert not axes[1, 0].get_images()  # The mixture is shown once.
  colorized = visualize.posterior_samples_figure(
      truth[0], rng.uniform(size=(4, 1, 8, 8, 3)), labels=visualize.COLORIZATION_LABELS)
  assert [a.get_title() for a in colorized.axes[:2]] == ["gray", "sample 1"]
  assert "4 posterior samples (colorized) of one image" in _figure_texts(colorized)


def test_posterior_samples_png_of_a_run(tmp_path):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(6)
  truth = rng.uniform(size=(3, 2, 8, 8, 1)).astype(np.float32)
  components = np.stack([truth, truth[:, ::-1], truth, truth], 1)  # [N, S=4, k, ...]
  np.savez(tmp_path / "separations.npz", mixtures=truth.sum(1), components=components,
           ground_truth=truth)
  path = visualize.write_posterior_samples(str(tmp_path), mixture=2)
  assert path == str(tmp_path / "posterior_samples_2.png")
  width, height = Image.open(path).size
  assert (width, height) == (660, 280)  # 6 columns x 1.1 in, 2 rows x 1.1 + 0.6 in, 100 dpi
  np.savez(tmp_path / "separations.npz", mixtures=truth.sum(1), components=truth,
           ground_truth=truth)
  with pytest.raises(ValueError, match="one sample per mixture"):
    visualize.write_posterior_samples(str(tmp_path))
