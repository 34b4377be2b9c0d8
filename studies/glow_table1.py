"""The paper's Table 1 for a per-σ Glow ladder: how likely the separations are.

  python -m studies.glow_table1 --data_path=/path/to/mnist --run=runs/glow_test \
      [--weights=ladder.npz] [--clean_weights=training/glow_mnist/glow_clean.npz] \
      [--out=results/mnist/glow/table1.md]

`--run` is a finished Glow separation (configs/mnist_glow.py). Mean log-likelihood of:
the test set under p_σL (the ladder's smallest-σ model, the one the last Langevin level
uses), the same test images with N(0, σ_L²) added (the density p_σL was fine-tuned to
model), the run's separated components under p_σL, the Average's estimates under p_σL, and
the test set under the clean model p_0. Every image is quantised to 8 bits and dequantised
with one fixed noise draw (the Glow's own `dequantize`), so all rows are comparable, and
each is given in nats per image and in bits/dim of 8-bit images
(−log p / (D ln 2) + 8 per dataset dimension, lower is more likely), mean ± 95 % interval.
"""

from __future__ import annotations

import os
import time

import numpy as np
from absl import flags

from basis_jax import cli
from basis_jax.evaluation import metrics, report
from basis_jax.files import atomic
from basis_jax.files import data as data_lib
from basis_jax.priors import glow, likelihood

_DATA = flags.DEFINE_string("data_path", None, "Folder with the MNIST idx files.")
_RUN = flags.DEFINE_string("run", None, "Workdir of a finished Glow separation.")
_WEIGHTS = flags.DEFINE_string("weights", "", "Per-σ Glow ladder (default: the shipped MNIST "
                               "Glow, basis_jax/weights/glow_mnist.npz).")
_CLEAN = flags.DEFINE_string("clean_weights", "training/glow_mnist/glow_clean.npz",
                             "The clean model p_0 the ladder was fine-tuned from.")
_NUM_TEST = flags.DEFINE_integer("num_test", 10_000, "Test images scored (the first ones).")
_CHUNK = flags.DEFINE_integer("chunk", 250, "Images per compiled call.")
_OUT = flags.DEFINE_string("out", "", "Write the table here (markdown) and OUT.json.")
flags.mark_flags_as_required(["data_path", "run"])

NOISE_SEED = 2026  # One dequantisation (and σ_L noise) draw for every row.


def summarise(log_p: np.ndarray, dims: int) -> dict:
  bits = likelihood.bits_per_dim(-log_p, dims)
  half = lambda v: float(1.96 * v.std(ddof=1) / np.sqrt(len(v)))
  return {"n": int(len(log_p)), "nats_per_image": float(log_p.mean()),
          "nats_per_image_ci95": half(log_p), "bits_per_dim": float(bits.mean()),
          "bits_per_dim_ci95": half(bits)}


def table(data_path: str, run: str, weights_path: str, clean_path: str, num_test: int,
          chunk: int) -> dict:
  """The rows of Table 1 (see the module docstring) as {label: summarise(...)}."""
  ladder = glow.load_weights(weights_path)
  if ladder.sigmas is None:
    raise ValueError(f"{weights_path} holds one clean model; Table 1 needs a per-σ ladder.")
  clean = glow.load_weights(clean_path)
  if clean.sigmas is not None:
    raise ValueError(f"{clean_path} holds a σ ladder; --clean_weights must be one clean model.")
  smallest = int(np.argmin(ladder.sigmas))
  sigma_l = ladder.sigmas[smallest]
  p_sigma_l = glow.select_level(ladder.state, smallest)
  sep = report.load_separations(run)
  test = data_lib.load({"source": "mnist", "path": data_path, "split": "test",
                        "num_examples": num_test}).images
  dims = int(np.prod(test.shape[1:]))
  separated = sep.components[:, 0].reshape((-1,) + sep.components.shape[3:])
  average = metrics.average_baseline(sep.mixtures, sep.num_components, sep.alphas)
  rows = {
      f"test set under p_σL (σ_L = {sigma_l:g})": (ladder, p_sigma_l, test, 0.0),
      "test set + N(0, σ_L²) under p_σL": (ladder, p_sigma_l, test, sigma_l),
      "BASIS separations under p_σL": (ladder, p_sigma_l, separated, 0.0),
      "Average's estimates under p_σL": (ladder, p_sigma_l, average.reshape(separated.shape),
                                         0.0),
      "test set under the clean model p_0": (clean, clean.state, test, 0.0),
  }
  results = {}
  for label, (weights, state, images, sigma) in rows.items():
    started = time.time()
    log_p = glow.image_log_probs(weights, state, images, seed=NOISE_SEED, chunk=chunk,
                                  sigma=sigma)
    results[label] = summarise(log_p, dims)
    results[label]["seconds"] = round(time.time() - started, 1)
  return {"rows": results, "sigma_l": sigma_l, "dims": dims, "run": run,
          "weights": weights_path, "clean_weights": clean_path,
          "mixtures": int(len(sep.mixtures))}


def markdown(result: dict) -> str:
  lines = [f"Table 1 for the Glow ladder {result['weights']} (clean model "
           f"{result['clean_weights']}); separations: {result['mixtures']} mixtures of "
           f"{result['run']}. Mean ± 95 % interval; bits/dim per {result['dims']} dimensions of "
           "8-bit images (lower is more likely).", "",
           "| images | n | log p, nats per image | bits/dim |", "|---|---|---|---|"]
  for label, row in result["rows"].items():
    lines.append(f"| {label} | {row['n']} | {row['nats_per_image']:.1f} ± "
                 f"{row['nats_per_image_ci95']:.1f} | {row['bits_per_dim']:.3f} ± "
                 f"{row['bits_per_dim_ci95']:.3f} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  weights = _WEIGHTS.value or os.path.relpath(glow.shipped_weights("mnist"))
  if not os.path.exists(_CLEAN.value):
    raise FileNotFoundError(f"--clean_weights {_CLEAN.value} not found.")
  result = table(_DATA.value, _RUN.value, weights, _CLEAN.value, _NUM_TEST.value, _CHUNK.value)
  text = markdown(result)
  print(text)
  if _OUT.value:
    atomic.write_report(_OUT.value, text, result)


if __name__ == "__main__":
  cli.run(main)
