"""The paper's Tables 3 and 4 offline: CIFAR-10 separations and colorizations scored in the
project feature network's features (classifier score, FD, KID; never IS or FID), each
beside its real-vs-real floor and the baseline, with label recovery by the same network.

  python -m studies.sample_quality_tables \
      --runs=agnostic:runs/agnostic,class_split:runs/class_split,color:runs/color \
      --best=runs/agnostic_best8 --out=results/cifar10/sample_quality.md

`--runs`: one-sample runs, NAME:WORKDIR; a run whose mixtures are gray images is read as
colorization. `--best`: a run with `--config.sampler.num_samples=S --config.select=likelihood`
on the same mixtures as a sum run, which adds three rows: the sample kept by the prior's
likelihood (best of S), chain 0 alone (one sample, for the same mixtures), and the aligned
posterior mean of the S. Every row is scored by `evaluation/sample_quality` (the same code
as `experiments.evaluate`): N images, against the run's training images, the real row the
first N test images of the run's dataset. The paper's IS / FID (Inception, 25,000 mixtures,
50,000 colorizations) are printed beside as a reference only: another network and another
N, so not comparable numbers; their excess over real is comparable in kind.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from absl import flags

from basis_jax import cli, errors
from basis_jax.evaluation import classifier, metrics, report, sample_quality
from basis_jax.files import atomic
from basis_jax.sampling import selection

_RUNS = flags.DEFINE_list("runs", [], "NAME:WORKDIR of one-sample runs.")
_BEST = flags.DEFINE_string("best", None, "WORKDIR of a best-of-S run (select=likelihood).")
_BEST_OF = flags.DEFINE_string("best_of", "agnostic", "The sum run --best shares mixtures with.")
_CLASSIFIER = flags.DEFINE_string("classifier", sample_quality.DEFAULT_CLASSIFIER,
                                  "Feature network (classifier.npz).")
_REFERENCE = flags.DEFINE_string("reference_path", None, "CIFAR-10 file whose training images "
                                 "are the reference (default: each run's own data file).")
_OUT = flags.DEFINE_string("out", None, "Markdown file to write (and OUT.json).")

# Paper Tables 3 and 4 (Inception; IS / FID), with their own real (CIFAR-10 11.24 / 0).
PAPER = {
    "agnostic": {"BASIS (NCSN)": (8.29, 22.12), "Average": (7.18, 28.02)},
    "class_split": {"BASIS (NCSN)": (7.83, 29.92), "Average": (6.14, 39.49),
                    "BASIS (Glow)": (5.74, 40.21)},
    "color": {"BASIS (NCSN)": (10.53, 11.58), "gray image": (8.01, 68.52),
              "BASIS (Glow)": (8.69, 28.70)},
}
PAPER_REAL = (11.24, 0.0)


def _scores(sep: report.Separations, images: np.ndarray | None = None) -> dict:
  """sample_quality of `images` [N, k, ...] (default: the run's kept sample)."""
  if images is not None:
    sep = dataclasses.replace(sep, components=np.asarray(images)[:, None], samples=None)
  reference = ({"source": "cifar10", "path": _REFERENCE.value, "split": "train"}
               if _REFERENCE.value else None)
  return sample_quality.sample_quality_results(sep, _CLASSIFIER.value, reference_data=reference)


def _row(label: str, scores: dict, labels: float | None) -> dict:
  return {"label": label, **{k: scores[k] for k in ("n_images", *sample_quality.SCORES,
                                                    "classifier_score_std")},
          "labels": labels}


def _excess(row: dict, real: dict, baseline: dict) -> dict:
  return {key: sample_quality.excess_over_real(row[key], real[key], baseline[key])
          for key in sample_quality.SCORES}


def sum_table(workdir: str, model, best: str | None) -> dict:
  """Rows real / Average / BASIS one sample (+ best of S, chain 0, posterior mean)."""
  sep = report.load_separations(workdir)
  with np.load(os.path.join(workdir, "separations.npz")) as f:
    arrays = {k: f[k] for k in ("indices", "ground_truth")}
  truth_labels = classifier.ground_truth_labels(workdir, arrays, None)
  average = metrics.average_baseline(sep.mixtures, sep.num_components, sep.alphas,
                                     channels=sep.components.shape[-1])

  def recovered(components):  # The first len(components) mixtures' labels.
    return float(classifier.separation_label_recovery(
        model, components, truth_labels[:len(components)]).mean())

  scored = _scores(sep)
  rows = [_row("real (test vs train)", scored["real"], recovered(sep.ground_truth)),
          _row("Average", scored["average"], recovered(average)),
          _row("BASIS, one sample", scored["basis"], recovered(sep.components[:, 0]))]
  if best:
    run = report.load_separations(best)
    if run.samples is None or not np.array_equal(run.mixtures, sep.mixtures[:len(run.mixtures)]):
      raise errors.InputFileError(f"{best} must keep its samples (select=likelihood) and mix "
                                  f"the first {len(run.mixtures)} mixtures of {workdir}.")
    s = run.samples.shape[1]
    kept = run.components[:, 0]
    mean = selection.aligned_mean(run.samples, kept)
    n = len(run.mixtures)
    for label, images in ((f"BASIS, best of {s} by likelihood", kept),
                          (f"BASIS, chain 0 of the same {n} mixtures", run.samples[:, 0]),
                          (f"BASIS, posterior mean of {s}", mean)):
      part = _scores(run, images)
      rows.append(_row(label, part["basis"], recovered(images)))
      rows[-1]["real_at_n"] = part["real"]
      rows[-1]["average_at_n"] = part["average"]
  for row in rows[2:]:
    real = row.get("real_at_n", scored["real"])
    baseline = row.get("average_at_n", scored["average"])
    row["excess"] = _excess(row, real, baseline)
  return {"workdir": workdir, "network": scored["network"], "reference": scored["reference"],
          "num_mixtures": len(sep.mixtures), "rows": rows}


def color_table(workdir: str, model) -> dict:
  """Rows true colour (real) / gray image / colorized, with classification accuracy."""
  sep = report.load_separations(workdir)
  with np.load(os.path.join(workdir, "separations.npz")) as f:
    arrays = {k: f[k] for k in ("indices", "ground_truth")}
  labels = classifier.ground_truth_labels(workdir, arrays, None)[:, 0]
  acc = classifier.colorization_accuracy(model, sep.components[:, 0, 0], sep.mixtures,
                                         sep.ground_truth[:, 0], labels)
  scored = _scores(sep)
  rows = [_row("true colour (test vs train)", scored["real"], acc["true_colour"]),
          _row("gray image", scored["average"], acc["grayscale"]),
          _row("BASIS, colorized", scored["basis"], acc["colorized"])]
  rows[2]["excess"] = _excess(rows[2], scored["real"], scored["average"])
  return {"workdir": workdir, "network": scored["network"], "reference": scored["reference"],
          "num_mixtures": len(sep.mixtures), "rows": rows}


def _fmt(value, digits=2):
  return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def markdown(tables: dict[str, dict]) -> str:
  lines = []
  for name, table in tables.items():
    colour = name == "color"
    what = "accuracy" if colour else "label recovery"
    lines += [f"### {name}: {table['num_mixtures']} {'images' if colour else 'mixtures'} "
              f"({table['workdir']})", "",
              f"Scores in the features of the {table['network']}, against {table['reference']}; "
              "excess over real = (score − real) ÷ (baseline − real), 0 as real images, 1 as "
              "the baseline.", "",
              f"| images | N | classifier score | FD (classifier features) | FD∞ (classifier "
              f"features) | KID (classifier features) | excess: classifier score / FD / FD∞ / "
              f"KID | {what} |",
              "|---|---|---|---|---|---|---|---|"]
    for row in table["rows"]:
      excess = row.get("excess")
      excess_text = ("" if excess is None else " / ".join(
          _fmt(excess[key]) for key in sample_quality.SCORES))
      lines.append(f"| {row['label']} | {row['n_images']} | "
                   f"{row['classifier_score']:.2f} ± {row['classifier_score_std']:.2f} | "
                   f"{row['fd_classifier_features']:.1f} | "
                   f"{row['fd_infinity_classifier_features']:.1f} | "
                   f"{row['kid_classifier_features']:.2f} | "
                   f"{excess_text} | {100 * row['labels']:.1f} % |")
    paper = PAPER.get(name)
    if paper:
      baseline = paper["gray image" if colour else "Average"]
      lines += ["", "The paper (Inception IS / FID; another network and N, not comparable "
                "numbers; excess over its own real, CIFAR-10 11.24 / 0):", "",
                "| paper row | IS | FID | excess: IS / FID |", "|---|---|---|---|"]
      for label, (inception_score, fid) in paper.items():
        excess = [sample_quality.excess_over_real(v, r, b) for v, r, b in
                  ((inception_score, PAPER_REAL[0], baseline[0]), (fid, PAPER_REAL[1],
                                                                     baseline[1]))]
        lines.append(f"| {label} | {inception_score:.2f} | {fid:.2f} | "
                     f"{_fmt(excess[0])} / {_fmt(excess[1])} |")
    lines.append("")
  return "\n".join(lines)


def main(argv):
  del argv
  model, _ = classifier.load(_CLASSIFIER.value)
  tables = {}
  for spec in _RUNS.value:
    name, workdir = spec.split(":", 1)
    sep = report.load_separations(workdir)
    colour = sep.mixtures.shape[-1] == 1 and sep.components.shape[-1] == 3
    tables[name] = (color_table(workdir, model) if colour else
                    sum_table(workdir, model, _BEST.value if name == _BEST_OF.value else None))
  text = markdown(tables)
  print(text)
  if _OUT.value:
    atomic.write_report(_OUT.value, text, tables)


if __name__ == "__main__":
  cli.run(main)
