"""A small CIFAR-10 classifier trained here, and the label-recovery measure built on it.

The paper argues that PSNR is the wrong yardstick for CIFAR-10 separations and reports
Inception Score / FID instead. The Inception weights cannot be fetched here, so this
project measures recognisability with its own classifier (trained by
`basis_jax.training.classifier_training`) and names the result for what it is: *label recovery
(project classifier, test accuracy X %)* — never IS or FID.

- `label_recovery(predicted, true)`: per mixture, the fraction of the ground-truth labels
  that the separated components recover, under the permutation of components to sources
  that recovers the most. The Average baseline (m/k for every component) predicts one class
  k times, so on a mixture of k distinct classes it recovers at most one label (≤ 1/k).
- `colorization_accuracy`: accuracy on colorized, grayscale-copied-to-RGB and true-colour
  images.

Weights: `save`/`load` in the project's `.npz` format (`basis_jax.files.checkpoint_io`), with the
architecture name and config in the metadata, so a file of another model is refused by name.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from basis_jax.files import checkpoint_io, data as data_lib, sharding

from basis_jax.evaluation import metrics
from basis_jax.errors import ConfigError, InputFileError
from basis_jax.files.checkpoint_io import CheckpointError

ARCHITECTURE = "cifar_cnn"
# Per-channel statistics of the CIFAR-10 training images, so the first layer sees ~unit scale.
_MEAN = (0.4914, 0.4822, 0.4465)
_STD = (0.2470, 0.2435, 0.2616)


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
  """stem width, then one (conv, pool, conv) stage per entry of `widths`."""
  stem: int = 32
  widths: tuple[int, ...] = (32, 64, 128)
  num_classes: int = 10
  image_channels: int = 3
  # Global max-pooling of BN-normalised features makes logits of std ~2.4 at
  # initialisation (an initial loss of ~5.8, not ln 10); the fixed scale brings them to ~0.3.
  logit_scale: float = 0.125

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> "ClassifierConfig":
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
      raise CheckpointError(f"Unknown classifier config field(s) {unknown}; "
                            f"expected some of {sorted(names)}.")
    values = dict(values)
    if "widths" in values:
      values["widths"] = tuple(int(w) for w in values["widths"])
    return cls(**values)


class _ConvBN(nnx.Module):

  def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(cin, cout, (3, 3), padding="SAME", use_bias=False, rngs=rngs)
    self.norm = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)

  def __call__(self, x, train: bool):
    return self.norm(self.conv(x), use_running_average=not train)


class _Stage(nnx.Module):

  def __init__(self, cin: int, width: int, *, rngs: nnx.Rngs):
    self.first = _ConvBN(cin, width, rngs=rngs)
    self.second = _ConvBN(width, width, rngs=rngs)

  def __call__(self, x, train: bool):
    x = jax.nn.relu(self.first(x, train))
    x = nnx.max_pool(x, (2, 2), (2, 2))
    return jax.nn.relu(self.second(x, train))


class Classifier(nnx.Module):
  """Stem conv, then per stage conv → 2×2 max-pool → conv (each with BN + ReLU), global
  max-pool, linear. Pooling right after the first conv of a stage puts most of the
  compute at the lower resolution, the layout fast CIFAR-10 trainers use."""

  def __init__(self, config: ClassifierConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.stem = _ConvBN(config.image_channels, config.stem, rngs=rngs)
    stages, cin = [], config.stem
    for width in config.widths:
      stages.append(_Stage(cin, width, rngs=rngs))
      cin = width
    self.stages = nnx.List(stages)
    self.head = nnx.Linear(cin, config.num_classes, rngs=rngs)

  def __call__(self, images, train: bool = False):
    """Logits [N, num_classes] of images [N, H, W, C] in [0, 1]."""
    return self.features(images, train)[1]

  def features(self, images, train: bool = False):
    """(penultimate features [N, D], logits [N, num_classes]): the global max-pool the
    linear head reads, and what it makes of it."""
    x = (images - jnp.asarray(_MEAN)) / jnp.asarray(_STD)
    x = jax.nn.relu(self.stem(x, train))
    for stage in self.stages:
      x = stage(x, train)
    pooled = jnp.max(x, axis=(1, 2))
    return pooled, self.head(pooled) * self.config.logit_scale


def create(config: ClassifierConfig, seed: int = 0) -> Classifier:
  return Classifier(config, rngs=nnx.Rngs(seed))


def count_params(model: Classifier) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))))


# ----------------------------------------------------------------------------- weights


def save(path: str, model: Classifier, metadata: Mapping[str, Any] | None = None) -> None:
  """Writes params and BN statistics atomically, with architecture and config."""
  meta = {"architecture": ARCHITECTURE, "config": dataclasses.asdict(model.config),
          **(metadata or {})}
  checkpoint_io.save_params(path, {"params": nnx.state(model, nnx.Param),
                                   "batch_stats": nnx.state(model, nnx.BatchStat)}, meta)


def load(path: str) -> tuple[Classifier, dict[str, Any]]:
  """The classifier saved at `path` and its metadata; CheckpointError (a UserError naming
  the problem) for a missing file, another architecture or mismatched parameters."""
  metadata = checkpoint_io.read_metadata(path)
  if metadata.get("architecture") != ARCHITECTURE:
    raise CheckpointError(
        f"{path} holds architecture {metadata.get('architecture')!r}, not the project's "
        f"CIFAR-10 classifier ({ARCHITECTURE!r}).",
        hint="train one with `python -m experiments.train_classifier` and pass its "
             "WORKDIR/classifier.npz.")
  config = ClassifierConfig.from_dict(metadata.get("config", {}))
  model = nnx.eval_shape(lambda: create(config))
  graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  loaded, _ = checkpoint_io.load_params(path, {"params": params, "batch_stats": stats})
  return nnx.merge(graphdef, loaded["params"], loaded["batch_stats"]), metadata


# ----------------------------------------------------------------------------- predictions


@functools.partial(jax.jit, static_argnums=0)
def _features(graphdef, state, images):
  return nnx.merge(graphdef, state).features(images, train=False)


def features(model: Classifier, images: np.ndarray,
             batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
  """(penultimate features [..., D], logits [..., num_classes]) of images [..., H, W, C] in
  [0, 1] (any leading shape), as float32 numpy arrays."""
  images = np.asarray(images, np.float32)
  lead, flat = images.shape[:-3], images.reshape((-1,) + images.shape[-3:])
  graphdef, state = nnx.split(model)
  batch_size = max(1, min(batch_size, len(flat)))
  if not len(flat):
    return (np.zeros(lead + (model.head.in_features,), np.float32),
            np.zeros(lead + (model.head.out_features,), np.float32))
  pooled, logits = sharding.map_chunks(lambda part: _features(graphdef, state, part), [flat],
                                       batch_size)
  return pooled.reshape(lead + (-1,)), logits.reshape(lead + (-1,))


def softmax(logits: np.ndarray) -> np.ndarray:
  """Class probabilities [..., C] of logits [..., C] (numpy, stable)."""
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def predict(model: Classifier, images: np.ndarray, batch_size: int = 500, *,
            flip_tta: bool = False) -> np.ndarray:
  """Predicted labels [...] of images [..., H, W, C] in [0, 1] (any leading shape).

  flip_tta: test-time augmentation, the class of the mean softmax of each image and its
  mirror image (left-right), as the fast CIFAR-10 trainers report their accuracy.
  """
  logits = features(model, images, batch_size)[1]
  if not flip_tta:
    return np.argmax(logits, -1)
  mirrored = features(model, np.flip(np.asarray(images), -2), batch_size)[1]
  return np.argmax(softmax(logits) + softmax(mirrored), -1)


def accuracy(model: Classifier, images: np.ndarray, labels: np.ndarray, *,
             flip_tta: bool = False) -> float:
  return float(np.mean(predict(model, images, flip_tta=flip_tta) == np.asarray(labels)))


# ----------------------------------------------------------------------------- the measure


def label_recovery(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
  """Per mixture, the fraction of its k ground-truth labels recovered.

  predicted [N, k]: the class predicted for each separated component; true [N, k]: the
  ground-truth labels. Components are matched to sources by the permutation that recovers
  the most labels (as PSNR takes the best permutation), so swapped components count.
  """
  predicted, true = np.asarray(predicted), np.asarray(true)
  if predicted.shape != true.shape or predicted.ndim != 2:
    raise ValueError(f"predicted {predicted.shape} and true {true.shape} labels must both "
                     "be [N, k].")
  hits = (predicted[:, :, None] == true[:, None, :]).astype(np.float64)  # component i, source j
  _, matched = metrics.best_permutation(hits)
  return matched.mean(-1)


def ground_truth_labels(run: str, separations, data_path: str | None) -> np.ndarray:
  """Labels [N, k] of the dataset items the run mixed, checked against its ground truth."""
  if "indices" not in separations or "ground_truth" not in separations:
    raise InputFileError(f"{run}/separations.npz has no indices/ground_truth: label recovery "
                         "needs mixtures of labelled dataset images.")
  with open(os.path.join(run, "config.json")) as f:
    data_config = json.load(f)["data"]
  if data_path:
    data_config["path"] = data_path
  dataset = data_lib.load(data_config)
  if dataset.labels is None:
    raise ConfigError(f"{dataset.name} has no labels.")
  indices = separations["indices"]
  if not np.allclose(dataset.images[indices], separations["ground_truth"], atol=1e-6):
    raise InputFileError(f"The images of {data_config.get('path')} at the run's indices are not "
                         "its ground truth: another dataset file than the run used.")
  return dataset.labels[indices]


def separation_label_recovery(model: Classifier, components: np.ndarray,
                              true_labels: np.ndarray) -> np.ndarray:
  """`label_recovery` of components [N, k, H, W, C] against labels [N, k]."""
  components = np.asarray(components)
  if components.ndim != 5 or components.shape[:2] != np.shape(true_labels):
    raise ValueError(f"components {components.shape} must be [N, k, H, W, C] with labels "
                     f"[N, k] ({np.shape(true_labels)}).")
  return label_recovery(predict(model, components), true_labels)


def colorization_accuracy(model: Classifier, colorized: np.ndarray, grayscale: np.ndarray,
                          true_colour: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """Accuracy on colorized images [N, H, W, 3], on the grayscale inputs [N, H, W, 1] copied
  to RGB, and on the true-colour images [N, H, W, 3]; labels [N]."""
  true_colour = np.asarray(true_colour, np.float32)
  gray = metrics.average_baseline(grayscale, 1, channels=true_colour.shape[-1])[:, 0]
  return {"colorized": accuracy(model, colorized, labels),
          "grayscale": accuracy(model, gray, labels),
          "true_colour": accuracy(model, true_colour, labels)}


def network_name(test_accuracy: float | None) -> str:
  """How the network is named beside any score made with it."""
  acc = ("test accuracy unknown" if test_accuracy is None
         else f"test acc {100 * test_accuracy:.1f} %")
  return f"project classifier, {acc}"


def name_of(test_accuracy: float | None) -> str:
  """How results of this measure are labelled wherever they are shown."""
  return f"label recovery ({network_name(test_accuracy)})"

