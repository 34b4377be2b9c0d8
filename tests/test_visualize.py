"""PNG grids: tiles land where they should, in range, and non-finite pixels do not crash."""

import numpy as np

from basis_jax.evaluation import visualize


def test_image_grid_places_tiles_row_major():
  images = np.zeros((5, 2, 2, 1), np.float32)
  images[4] = 1.0  # The fifth tile: row 1, column 2 of a 3-column grid.
  grid = visualize.image_grid(images, pad=1)
  assert grid.shape == (2 * 3 + 1, 3 * 3 + 1, 3)
  np.testing.assert_array_equal(grid[4:6, 7:9], 255)
  np.testing.assert_array_equal(grid[1:3, 1:3], 0)


def test_separation_grid_columns_and_nan(tmp_path):
  mixtures = np.full((2, 3, 3, 1), 2.0, np.float32)  # A sum of two images: range [0, 2].
  truth = np.ones((2, 2, 3, 3, 1), np.float32)
  components = np.full((2, 2, 3, 3, 1), np.nan, np.float32)  # A broken run still renders.
  grid = visualize.separation_grid(mixtures, components, truth, pad=1)
  assert grid.shape == (2 * 4 + 1, 5 * 4 + 1, 3)
  np.testing.assert_array_equal(grid[1:4, 1:4], 255)  # Mixture at the top of its range.
  np.testing.assert_array_equal(grid[1:4, 13:16], 0)  # NaN components drawn black.
  visualize.save_png(str(tmp_path / "g.png"), grid, scale=2)
  assert (tmp_path / "g.png").stat().st_size > 0
