"""The shipped MNIST prior's likelihood: the denoising bound against the probability-flow ODE.

  python -m studies.likelihood_check --data_path=/path/to/mnist \
      --heldout_run=runs/lik_sep_heldout --test_run=runs/lik_sep_test

The two runs are separations with configs/mnist_unet.py (`:heldout`, and the default test
pairs). Prints, in bits/dim of 8-bit images (every image quantised to 8 bits and dequantised
with the same fixed uniform noise, docs/likelihood.md):
1. σ_min of the bound on held-out training digits (the last 2,000; never test images): the
   held-out bits/dim per σ_min, and the Monte Carlo spread of K draws (per image, and of the
   difference of two images under common random numbers);
2. bound and ODE on held-out candidates: real digits, the Average's m/2 images, separations
   (held-out run); bits/dim by each, Spearman's ρ between the two;
3. the paper's Table 1 for this prior (test run): test digits, separations, m/2, by both.
"""

import dataclasses
import json
import os
import time

from absl import flags, logging
import jax
import numpy as np
from scipy import stats

from basis_jax import cli

from basis_jax.files import data, sharding

from basis_jax.priors import likelihood as lk
from basis_jax.priors import score_unet

_DATA = flags.DEFINE_string("data_path", None, "Folder with the MNIST idx files.")
_HELDOUT = flags.DEFINE_string("heldout_run", None, "Separation workdir, held-out mixtures.")
_TEST = flags.DEFINE_string("test_run", None, "Separation workdir, test mixtures.")
_STUDY = flags.DEFINE_integer("study_images", 32, "Held-out digits for the σ_min study.")
_SIGMA_MINS = flags.DEFINE_list("sigma_mins", ["0.002", "0.005", "0.01", "0.02"],
                                "σ_min values of the study.")
_MIXTURES = flags.DEFINE_integer("candidate_mixtures", 32,
                                 "Held-out mixtures whose candidates both estimates score.")
_ODE_STEPS = flags.DEFINE_integer("ode_steps", 16, "RK4 steps of the ODE.")
_CHUNK = flags.DEFINE_integer("chunk", 16, "Images per compiled call.")
_OUT = flags.DEFINE_string("out", "", "Write the figures here as JSON (optional).")
flags.mark_flags_as_required(["data_path", "heldout_run", "test_run"])

HELDOUT_FIRST = 58_000  # configs/train_score_unet_mnist.py holds out the last 2,000.


def evaluate(fn, params, images, chunk):
  """fn(params, x [chunk, ...]) -> [chunk] over images, padded to whole chunks (one trace)."""
  return sharding.map_chunks(lambda part: fn(params, part), [images], chunk)


def as_8bit(images):
  """Quantised to 8 bits, dequantised with noise fixed by one key (the same for every set)."""
  return np.asarray(lk.dequantize_8bit(images, jax.random.key(2026)))


def bpd(nll):
  return lk.bits_per_dim(nll, 28 * 28)


def main(argv):
  del argv
  results, started = {}, time.time()
  _, graphdef, params, metadata = score_unet.load_weights(score_unet.shipped_weights("mnist"))
  score = score_unet.make_score_fn(graphdef)
  trained = tuple(metadata["sigma_range"])
  chunk = _CHUNK.value

  def bound_fn(settings):
    return jax.jit(lambda p, x: lk.denoising_bound(score, p, x, settings))

  heldout = data.load({"source": "mnist", "path": _DATA.value, "split": "train",
                       "first_example": HELDOUT_FIRST}).images
  study = as_8bit(heldout[-_STUDY.value:])  # The last ones: not in the held-out mixtures.

  print(f"1. σ_min of the bound: {len(study)} held-out digits, σ_max {trained[1]}, K = 64")
  for sigma_min in map(float, _SIGMA_MINS.value):
    t = time.time()
    nll = evaluate(bound_fn(lk.BoundSettings(sigma_min, trained[1])), params, study, chunk)
    results[f"study_sigma_min_{sigma_min:g}"] = float(bpd(nll).mean())
    print(f"  σ_min {sigma_min:<6g} {bpd(nll).mean():.3f} ± {bpd(nll).std(ddof=1):.3f} bits/dim"
          f"{'  (below the trained range)' if sigma_min < trained[0] else ''}"
          f"   {time.time() - t:.0f} s")
  for k in (16, 64):
    runs = np.stack([evaluate(bound_fn(lk.BoundSettings(num_sigmas=k, seed=seed)), params,
                              study[:8], chunk) for seed in range(4)])
    spread = runs.std(axis=0, ddof=1).mean()
    diff = (runs[:, :4] - runs[:, 4:]).std(axis=0, ddof=1).mean()
    results[f"mc_std_k{k}"] = [float(spread), float(diff)]
    print(f"  K = {k}: Monte Carlo std per image {spread:.1f} nats "
          f"({spread / (784 * np.log(2)):.4f} bits/dim), of a difference of two images "
          f"{diff:.1f} nats")

  sep = np.load(os.path.join(_HELDOUT.value, "separations.npz"))
  n = _MIXTURES.value
  groups = {"real digits": sep["ground_truth"][:n].reshape(-1, 28, 28, 1),
            "Average m/2": sep["mixtures"][:n] / 2,
            "separations": np.clip(sep["components"][:n].reshape(-1, 28, 28, 1), 0, 1)}
  # The bound (form 'data') is of p_σmin ∗ N(0, σ_min²) = p_√2σmin for exact scores: the
  # ODE starts there.
  ode_settings = lk.OdeSettings(sigma_min=np.sqrt(2) * lk.BoundSettings().sigma_min,
                                num_steps=_ODE_STEPS.value)
  ode = jax.jit(lambda p, x: -lk.ode_log_likelihood(score, p, x, ode_settings))
  bound = bound_fn(lk.BoundSettings())
  print(f"2. Bound (K = 64) and ODE (from σ = {ode_settings.sigma_min:.4f}, RK4, "
        f"{_ODE_STEPS.value} steps, 1 Rademacher probe), held-out candidates of {n} mixtures")
  t = time.time()
  steps_check = [evaluate(jax.jit(lambda p, x, s=s: -lk.ode_log_likelihood(
      score, p, x, dataclasses.replace(ode_settings, num_steps=s))), params,
      as_8bit(groups["real digits"][:4]), 4) for s in (8, _ODE_STEPS.value, 2 * _ODE_STEPS.value)]
  print("  ODE steps 8 / {} / {} on 4 digits: {} bits/dim  ({:.0f} s)".format(
      _ODE_STEPS.value, 2 * _ODE_STEPS.value,
      " / ".join(f"{bpd(v).mean():.4f}" for v in steps_check), time.time() - t))
  all_bound, all_ode = [], []
  for name, images in groups.items():
    t = time.time()
    x = as_8bit(images)
    b, o = evaluate(bound, params, x, chunk), evaluate(ode, params, x, chunk)
    all_bound.append(b)
    all_ode.append(o)
    rho = stats.spearmanr(b, o)[0]
    results[f"heldout_{name}"] = [float(bpd(b).mean()), float(bpd(o).mean()), float(rho)]
    print(f"  {name:<12} n={len(x):<3} bound {bpd(b).mean():.3f}  ODE {bpd(o).mean():.3f} "
          f"bits/dim  bound − ODE {(b - o).mean() / (784 * np.log(2)):+.3f}  Spearman {rho:.3f}  "
          f"({time.time() - t:.0f} s)")
  rho = stats.spearmanr(np.concatenate(all_bound), np.concatenate(all_ode))[0]
  results["spearman_all"] = float(rho)
  print(f"  all candidates: Spearman ρ(bound, ODE) = {rho:.3f}")

  sep = np.load(os.path.join(_TEST.value, "separations.npz"))
  table = {"test digits": sep["ground_truth"].reshape(-1, 28, 28, 1),
           "separations": np.clip(sep["components"].reshape(-1, 28, 28, 1), 0, 1),
           "Average m/2": sep["mixtures"] / 2}
  print(f"3. Table 1 (the paper's; test run, {len(sep['mixtures'])} mixtures), bits/dim, "
        "mean ± 95% interval")
  for name, images in table.items():
    t = time.time()
    x = as_8bit(images)
    b = bpd(evaluate(bound, params, x, chunk))
    o = bpd(evaluate(ode, params, x, chunk))
    results[f"table1_{name}"] = {"bound": [float(b.mean()), float(b.std(ddof=1))],
                                 "ode": [float(o.mean()), float(o.std(ddof=1))], "n": len(b)}
    half = lambda v: 1.96 * v.std(ddof=1) / np.sqrt(len(v))
    print(f"  {name:<12} n={len(b):<3} bound {b.mean():.3f} ± {half(b):.3f}  "
          f"ODE {o.mean():.3f} ± {half(o):.3f}  ({time.time() - t:.0f} s)")
  print(f"wall time {time.time() - started:.0f} s")
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(results, f, indent=1)
  logging.info("done")


if __name__ == "__main__":
  cli.run(main)
