"""Label recovery of a CIFAR-10 separation (or colorization) run, by the project classifier.

  python -m experiments.label_recovery --workdir=runs/cifar_sep \
      --classifier=runs/classifier/classifier.npz [--data_path=/path/to/cifar10_test.npz]

Reads WORKDIR/separations.npz and WORKDIR/config.json (written by `experiments.separate`). The
ground-truth labels are those of the dataset items mixed (`indices`), read from the run's
own `config.data` (`--data_path` replaces its path, e.g. on another machine); the images
at those indices must equal the saved ground truth, so another dataset file is refused.
Prints a table and writes WORKDIR/label_recovery.json. The measure is "label recovery (project
classifier, test acc X %)": not Inception Score or FID (docs/classifier.md).
"""

import logging
import os

import numpy as np
from absl import flags

from basis_jax.files import atomic

from basis_jax.evaluation import classifier, metrics

from basis_jax import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a separation run (separations.npz).")
_CLASSIFIER = flags.DEFINE_string("classifier", None, "classifier.npz of train_classifier.")
_DATA_PATH = flags.DEFINE_string("data_path", None, "Replaces the run's config.data.path.")
flags.mark_flags_as_required(["workdir", "classifier"])


def main(argv):
  del argv
  run = _WORKDIR.value
  model, meta = classifier.load(_CLASSIFIER.value)
  name = classifier.name_of(meta.get("test_accuracy"))
  with np.load(os.path.join(run, "separations.npz")) as f:
    separations = {k: f[k] for k in f.files}
  labels = classifier.ground_truth_labels(run, separations, _DATA_PATH.value)
  components = separations["components"]
  if components.ndim == 6:  # [N, S, k, ...]: several samples per mixture; score the first.
    components = components[:, 0]
  mixtures, truth = separations["mixtures"], separations["ground_truth"]
  result = {"measure": name, "classifier": os.path.abspath(_CLASSIFIER.value),
            "classifier_test_accuracy": meta.get("test_accuracy"),
            "num_mixtures": int(len(mixtures))}
  rows = [("classifier test accuracy", meta.get("test_accuracy"))]
  if mixtures.shape[-1] == 1 and truth.shape[-1] > 1:  # Colorization: one component.
    acc = classifier.colorization_accuracy(model, components[:, 0], mixtures, truth[:, 0],
                                           labels[:, 0])
    result["colorization_accuracy"] = acc
    rows += [("accuracy, colorized", acc["colorized"]),
             ("accuracy, grayscale copied to RGB", acc["grayscale"]),
             ("accuracy, true colour", acc["true_colour"])]
  else:
    k = truth.shape[1]
    average = metrics.average_baseline(mixtures, k, separations.get("alphas"))
    basis = classifier.separation_label_recovery(model, components, labels)
    baseline = classifier.separation_label_recovery(model, average, labels)
    distinct = np.array([len(set(row)) == k for row in labels])
    result.update(basis=metrics.summarize(basis), average=metrics.summarize(baseline),
                  distinct_class_fraction=float(distinct.mean()),
                  basis_distinct_classes=float(basis[distinct].mean()) if distinct.any() else None,
                  average_distinct_classes=(float(baseline[distinct].mean())
                                            if distinct.any() else None))
    rows += [("label recovery, BASIS", basis.mean()),
             ("label recovery, Average baseline", baseline.mean()),
             ("mixtures of distinct classes", distinct.mean())]
  atomic.write_json(os.path.join(run, "label_recovery.json"), result)
  table = [f"{name}, {len(mixtures)} mixtures of {run}"]
  table += [f"  {label:<36} {'-' if value is None else f'{100 * value:5.1f} %'}"
            for label, value in rows]
  logging.info("\n".join(table))


if __name__ == "__main__":
  cli.run(main)
