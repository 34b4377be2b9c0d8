"""PNG grids a person can look at: separations (mixture | ground truth | separated, one row
each) and plain image grids (samples)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from basis_jax.files import atomic

from basis_jax.evaluation import metrics


def _to_rgb_uint8(images: np.ndarray, data_range) -> np.ndarray:
  low, high = data_range
  images = (np.asarray(images, np.float32) - low) / (high - low)
  images = np.clip(np.nan_to_num(images), 0.0, 1.0)
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  return (images * 255 + 0.5).astype(np.uint8)


def _place(grid: np.ndarray, tile: np.ndarray, row: int, col: int, pad: int) -> None:
  h, w = tile.shape[:2]
  top, left = pad + row * (h + pad), pad + col * (w + pad)
  grid[top:top + h, left:left + w] = tile


def image_grid(images, data_range=(0.0, 1.0), pad: int = 2) -> np.ndarray:
  """[N, H, W, C] -> one uint8 RGB image, as square as possible (e.g. prior samples)."""
  tiles = _to_rgb_uint8(images, data_range)
  n, h, w, _ = tiles.shape
  cols = int(np.ceil(np.sqrt(n)))
  rows = int(np.ceil(n / cols))
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
  for i, tile in enumerate(tiles):
    _place(grid, tile, i // cols, i % cols, pad)
  return grid


def separation_grid(mixtures, components, ground_truth=None, data_range=(0.0, 1.0),
                    mixture_range=None, max_rows: int = 8, pad: int = 2) -> np.ndarray:
  """Rows of [mixture, gt_1..gt_k, x̂_1..x̂_k] as one uint8 RGB image.

  Mixtures are shown in `mixture_range` (default: [0, k·high] for sums) so they do not clip.
  """
  n = min(max_rows, mixtures.shape[0])
  k = components.shape[1]
  h, w = components.shape[2:4]
  if mixture_range is None:
    mixture_range = (min(data_range[0], float(np.min(mixtures[:n]))),
                     max(data_range[1], float(np.max(mixtures[:n]))))
  columns = 1 + k * (2 if ground_truth is not None else 1)
  grid = np.full((n * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
  for row in range(n):
    mixture = mixtures[row]
    if mixture.shape[:2] != (h, w):
      raise ValueError(f"Mixture {mixture.shape} and components {components.shape[2:]} differ.")
    tiles = [_to_rgb_uint8(mixture, mixture_range)]
    if ground_truth is not None:
      tiles += list(_to_rgb_uint8(ground_truth[row], data_range))
    tiles += list(_to_rgb_uint8(components[row], data_range))
    for col, tile in enumerate(tiles):
      _place(grid, tile, row, col, pad)
  return grid


def save_png(path: str, image: np.ndarray, scale: int = 1) -> None:
  picture = Image.fromarray(image)
  if scale > 1:
    picture = picture.resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST)
  with atomic.atomic_open(path, "wb") as f:
    picture.save(f, format="PNG")


SEPARATION_LABELS = ("mixture", "truth", "separated")
COLORIZATION_LABELS = ("gray", "original", "colorized")


def separation_figure(mixtures, components, ground_truth=None, data_range=(0.0, 1.0),
                      max_rows: int = 8, tile_inches: float = 1.1,
                      labels: tuple[str, str, str] = SEPARATION_LABELS):
  """A labelled matplotlib Figure: mixture | truth 1..k | separated 1..k, one mixture a row.

  With ground truth, separated j is the estimate the evaluation matches to truth j (its
  best PSNR permutation), so a row reads "truth 1 beside separated 1". `labels` name the
  three kinds of column (COLORIZATION_LABELS: gray | original | colorized); the title
  says how many of the mixtures are shown ("first 8 of 500 mixtures").
  """
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")  # Files only: no display on servers and in tests.
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  total = mixtures.shape[0]
  n, k = min(max_rows, total), components.shape[1]
  components = components[:n]
  if ground_truth is not None:
    ground_truth = ground_truth[:n]
    permutation = metrics.separation_psnr(components, ground_truth,
                                          data_range[1] - data_range[0])["permutation"]
    components = metrics.apply_permutation(components, permutation)
  mixture_range = (min(data_range[0], float(np.min(mixtures[:n]))),
                   max(data_range[1], float(np.max(mixtures[:n]))))
  titles = [labels[0]]
  columns = [(mixtures[:n], mixture_range)]
  for name, images in zip(labels[1:], (ground_truth, components)):
    if images is not None:
      titles += [name] if k == 1 else [f"{name} {j + 1}" for j in range(k)]
      columns += [(images[:, j], data_range) for j in range(k)]
  figure, axes = plt.subplots(n, len(columns), squeeze=False,
                              figsize=(tile_inches * len(columns), tile_inches * n + 0.6))
  noun = "mixture" if labels[0] == "mixture" else "image"
  figure.suptitle(f"all {total} {noun}s" if n == total else f"first {n} of {total} {noun}s",
                  fontsize=9)
  for col, (images, value_range) in enumerate(columns):
    axes[0, col].set_title(titles[col], fontsize=9)
    for row in range(n):
      axes[row, col].imshow(_to_rgb_uint8(images[row], value_range), interpolation="nearest")
      axes[row, col].axis("off")
  figure.tight_layout(pad=0.3)
  return figure


def save_component_pngs(folder: str, components: np.ndarray, data_range=(0.0, 1.0)) -> int:
  """Each component as `folder/mixture_NNNNN_component_J.png` (J from 1, in the order of
  separations.npz; `..._sample_S_component_J.png` for [N, S, k, ...]); returns the count."""
  tiles = _to_rgb_uint8(components, data_range)
  if components.shape[-1] == 1:
    tiles = tiles[..., :1]
  count = 0
  for index in np.ndindex(*tiles.shape[:-3]):
    name = f"mixture_{index[0]:05d}"
    if len(index) == 3:
      name += f"_sample_{index[1] + 1}"
    name += f"_component_{index[-1] + 1}.png"
    tile = tiles[index]
    save_png(os.path.join(folder, name), tile[..., 0] if tile.shape[-1] == 1 else tile)
    count += 1
  return count


def save_figure(path: str, figure, dpi: int = 100) -> None:
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  with atomic.atomic_open(path, "wb") as f:
    figure.savefig(f, format="png", dpi=dpi)
  plt.close(figure)
