"""PNG grids a person can look at: separations (mixture | ground truth | separated, one row
each), the posterior samples of one mixture (paper Figure 5) and plain image grids (samples)."""

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
  figure, axes = _tile_axes(plt, n, len(columns), tile_inches)
  noun = "mixture" if labels[0] == "mixture" else "image"
  figure.suptitle(f"all {total} {noun}s" if n == total else f"first {n} of {total} {noun}s",
                  fontsize=9)
  for col, (images, value_range) in enumerate(columns):
    axes[0, col].set_title(titles[col], fontsize=9)
    for row in range(n):
      axes[row, col].imshow(_to_rgb_uint8(images[row], value_range), interpolation="nearest")
      axes[row, col].axis("off")
  return figure


def posterior_samples_figure(mixture, samples, ground_truth=None, data_range=(0.0, 1.0),
                             tile_inches: float = 1.1,
                             labels: tuple[str, str, str] = SEPARATION_LABELS,
                             title: str | None = None):
  """S posterior samples of one mixture (paper Figure 5): a labelled matplotlib Figure.

  mixture [H, W, C_m], samples [S, k, H, W, C], ground_truth [k, H, W, C] or None. One row
  per component; columns: the mixture (first row), the truth, then sample 1..S. With the
  truth, each sample's components are reordered to match it (its best PSNR permutation),
  so a row holds one source across the samples; without, the sampler's order is kept.
  """
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel
  samples = np.asarray(samples)
  if samples.ndim != 5 or mixture.shape[:2] != samples.shape[2:4]:
    raise ValueError(f"samples {samples.shape} must be [S, k, H, W, C] of the mixture's size "
                     f"{mixture.shape[:2]}.")
  num_samples, k = samples.shape[:2]
  if ground_truth is not None:
    truth = np.broadcast_to(ground_truth, samples.shape)
    permutation = metrics.separation_psnr(samples, truth,
                                          data_range[1] - data_range[0])["permutation"]
    samples = metrics.apply_permutation(samples, permutation)
  mixture_range = (min(data_range[0], float(np.min(mixture))),
                   max(data_range[1], float(np.max(mixture))))
  first_sample = 1 if ground_truth is None else 2
  figure, axes = _tile_axes(plt, k, first_sample + num_samples, tile_inches)
  noun = "mixture" if labels[0] == "mixture" else "image"
  figure.suptitle(title or f"{num_samples} posterior samples ({labels[2]}) of one {noun}",
                  fontsize=9)
  titles = [labels[0]] + ([labels[1]] if ground_truth is not None else [])
  titles += [f"sample {s + 1}" for s in range(num_samples)]
  for col, name in enumerate(titles):
    axes[0, col].set_title(name, fontsize=9)
  for row in range(k):
    tiles = [] if ground_truth is None else [ground_truth[row]]
    tiles += list(samples[:, row])
    for col, tile in enumerate(tiles, start=1):
      axes[row, col].imshow(_to_rgb_uint8(tile, data_range), interpolation="nearest")
      axes[row, col].axis("off")
    # The first column keeps its (invisible) axis so that its label names the row.
    first = axes[row, 0]
    first.set_xticks([])
    first.set_yticks([])
    for spine in first.spines.values():
      spine.set_visible(False)
    if k > 1:
      first.set_ylabel(f"component {row + 1}", fontsize=9)
  axes[0, 0].imshow(_to_rgb_uint8(mixture, mixture_range), interpolation="nearest")
  return figure


def write_posterior_samples(workdir: str, mixture: int = 0, out: str | None = None) -> str:
  """`posterior_samples_figure` of one mixture of a run; returns the PNG's path (default
  WORKDIR/posterior_samples_<mixture>.png).

  The S samples are those `separations.npz` keeps: `samples` with a selection
  (config.select), else `components` [N, S, k, ...] (select='none', S > 1).
  """
  from basis_jax import errors  # pylint: disable=import-outside-toplevel
  from basis_jax.evaluation import report  # pylint: disable=import-outside-toplevel
  sep = report.load_separations(workdir)
  samples = sep.samples if sep.samples is not None else sep.components
  if samples.shape[1] < 2:
    raise errors.InputFileError(
        f"{workdir}/separations.npz holds one sample per mixture: nothing to compare.",
        hint="run experiments.separate with --config.sampler.num_samples=S (S > 1).")
  if not 0 <= mixture < len(sep.mixtures):
    raise errors.ConfigError(f"mixture={mixture}: the run has mixtures 0..{len(sep.mixtures) - 1}.")
  colorization = sep.mixtures.shape[-1] == 1 and sep.components.shape[-1] > 1
  figure = posterior_samples_figure(
      sep.mixtures[mixture], samples[mixture],
      None if sep.ground_truth is None else sep.ground_truth[mixture],
      labels=COLORIZATION_LABELS if colorization else SEPARATION_LABELS,
      title=f"{samples.shape[1]} posterior samples of {'image' if colorization else 'mixture'} "
            f"{mixture}")
  out = out or os.path.join(workdir, f"posterior_samples_{mixture}.png")
  save_figure(out, figure)
  return out


def _tile_axes(plt, rows: int, columns: int, tile_inches: float):
  """A grid of image axes. The constrained layout keeps the column titles below the
  suptitle (tight_layout drew the suptitle over them)."""
  figure, axes = plt.subplots(rows, columns, squeeze=False, layout="constrained",
                              figsize=(tile_inches * columns, tile_inches * rows + 0.6))
  figure.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.01, hspace=0.01)
  return figure, axes


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
