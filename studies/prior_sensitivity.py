"""Does a sample-quality score see the prior? Two runs on the same mixtures, paired.

  python -m studies.prior_sensitivity --runs=shipped:runs/a,step3938:runs/b \
      --reference_path=/path/to/cifar10_jpeg_q75.npz --out=docs/prior_sensitivity.md

Both runs must hold the same mixtures (the same config but the prior's weights). Each is
scored as `experiments.evaluate` scores it (classifier score, FD and KID in the feature
network's features, against the training images of --reference_path, or each run's own data
file), plus PSNR; the difference between the runs gets a paired bootstrap over mixtures
(both components of a resampled mixture move together), so a reader sees whether the score
tells the priors apart beyond the noise of N mixtures.
"""

from __future__ import annotations

import numpy as np
from absl import flags

from basis_jax import cli, errors
from basis_jax.evaluation import classifier, report, sample_quality, scores
from basis_jax.files import atomic
from basis_jax.files import data_formats

_RUNS = flags.DEFINE_list("runs", [], "Two NAME:WORKDIR runs on the same mixtures.")
_CLASSIFIER = flags.DEFINE_string("classifier", sample_quality.DEFAULT_CLASSIFIER,
                                  "Feature network (classifier.npz).")
_REFERENCE = flags.DEFINE_string("reference_path", None, "CIFAR-10 file whose training images "
                                 "are the reference (default: the runs' data file).")
_BOOTSTRAP = flags.DEFINE_integer("bootstrap", 200, "Paired bootstrap resamples.")
_OUT = flags.DEFINE_string("out", None, "Markdown file to write (and OUT.json).")


def _set_scores(pooled, logits, reference, kid_subsets):
  return sample_quality.set_scores(pooled, logits, reference, kid_subsets=kid_subsets)


def main(argv):
  del argv
  if len(_RUNS.value) != 2:
    raise errors.ConfigError("--runs needs two NAME:WORKDIR runs.")
  model, meta = classifier.load(_CLASSIFIER.value)
  runs = [spec.split(":", 1) for spec in _RUNS.value]
  seps = [report.load_separations(workdir) for _, workdir in runs]
  if not np.array_equal(seps[0].mixtures, seps[1].mixtures):
    raise errors.InputFileError("The two runs hold different mixtures.")
  reference_data = ({"source": "cifar10", "path": _REFERENCE.value, "split": "train"}
                    if _REFERENCE.value else None)
  ref_config = report.reference_data_config(seps[0], reference_data)

  reference = sample_quality.reference_features(
      model, data_formats.file_digest(_CLASSIFIER.value), ref_config, seps[0].components.shape[3:])
  n, k = seps[0].components.shape[0], seps[0].num_components
  features, per_mixture_psnr, results = [], [], {}
  for (name, workdir), sep in zip(runs, seps):
    images = np.clip(sep.components[:, 0], 0.0, 1.0)
    pooled, logits = classifier.features(model, images.reshape((-1,) + images.shape[2:]))
    features.append((pooled.reshape(n, k, -1), logits.reshape(n, k, -1)))
    summary, arrays = scores.separation_scores(sep.components, sep.ground_truth,
                                               sep.mixtures, sep.alphas)
    per_mixture_psnr.append(arrays["mixture_psnr"])
    results[name] = {**_set_scores(pooled, logits, reference, 100),
                     "psnr": summary["psnr"]["mean"], "workdir": workdir}
  rng = np.random.default_rng(0)
  keys = (*sample_quality.SCORES, "psnr")
  diffs = {key: [] for key in keys}
  for _ in range(_BOOTSTRAP.value):
    rows = rng.integers(0, n, n)
    values = []
    for (pooled, logits), psnr in zip(features, per_mixture_psnr):
      part = _set_scores(pooled[rows].reshape(n * k, -1), logits[rows].reshape(n * k, -1),
                         reference, 10)
      part["psnr"] = float(psnr[rows].mean())
      values.append(part)
    for key in keys:
      diffs[key].append(values[1][key] - values[0][key])
  names = [name for name, _ in runs]
  bootstrap = {key: {"mean": float(np.mean(v)), "low": float(np.percentile(v, 2.5)),
                     "high": float(np.percentile(v, 97.5))} for key, v in diffs.items()}
  out = {"network": classifier.network_name(meta.get("test_accuracy")),
         "reference": f"{ref_config.get('source')} {ref_config.get('split')} "
                      f"({reference['n']} images)",
         "num_mixtures": int(n), "runs": results, "difference": f"{names[1]} − {names[0]}",
         "bootstrap": bootstrap, "bootstrap_resamples": _BOOTSTRAP.value}
  lines = [f"{n} mixtures; scores in the features of the {out['network']} against "
           f"{out['reference']}; difference {out['difference']} with its 95 % paired "
           f"bootstrap interval over mixtures ({_BOOTSTRAP.value} resamples; KID with 10 "
           "subsets inside the bootstrap).", "",
           f"| score | {names[0]} | {names[1]} | difference [95 % interval] |",
           "|---|---|---|---|"]
  for key in keys:
    label = sample_quality.SCORE_NAMES.get(key, "PSNR (dB)")
    b = bootstrap[key]
    lines.append(f"| {label} | {results[names[0]][key]:.3f} | {results[names[1]][key]:.3f} | "
                 f"{b['mean']:+.3f} [{b['low']:+.3f}, {b['high']:+.3f}] |")
  text = "\n".join(lines) + "\n"
  print(text)
  if _OUT.value:
    atomic.write_report(_OUT.value, text, out)


if __name__ == "__main__":
  cli.run(main)
