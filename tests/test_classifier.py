"""The project classifier and the label-recovery measure: tiny models, synthetic data; and the
committed feature network on the exact test images."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from basis_jax.files import checkpoint_io, data, sharding

from basis_jax.evaluation import classifier, metrics, sample_quality

from basis_jax.training import classifier_training, optim
from basis_jax.errors import ConfigError
from basis_jax.files.checkpoint_io import CheckpointError
from configs import train_classifier_cifar10

TINY = classifier.ClassifierConfig(stem=4, widths=(4, 8), num_classes=10)
SIDE = 8  # The network pools globally, so small images keep the tests fast.


def test_label_recovery_counts_swapped_components():
  true = np.array([[3, 7], [3, 7], [3, 7], [3, 7]])
  predicted = np.array([[3, 7],    # in order
                        [7, 3],    # swapped: still both recovered
                        [3, 3],    # one
                        [1, 2]])   # none
  np.testing.assert_allclose(classifier.label_recovery(predicted, true), [1, 1, 0.5, 0])


def test_label_recovery_of_one_image_repeated_is_at_most_one_label():
  # The Average baseline gives every component the same image m/k, so the classifier
  # predicts one class k times: of k distinct labels at most one is recovered.
  rng = np.random.default_rng(0)
  true = np.stack([rng.choice(10, 2, replace=False) for _ in range(200)])
  for predicted_class in (true[:, 0], true[:, 1], rng.integers(0, 10, 200)):
    predicted = np.repeat(predicted_class[:, None], 2, 1)
    recovery = classifier.label_recovery(predicted, true)
    assert recovery.max() <= 0.5
  assert classifier.label_recovery(np.repeat(true[:, :1], 2, 1), true).mean() == 0.5


def test_average_baseline_through_the_model_recovers_at_most_half():
  model = classifier.create(TINY)
  rng = np.random.default_rng(1)
  mixtures = rng.random((6, SIDE, SIDE, 3)).astype(np.float32) * 2
  average = metrics.average_baseline(mixtures, 2)
  true = np.stack([rng.choice(10, 2, replace=False) for _ in range(6)])
  assert classifier.separation_label_recovery(model, average, true).max() <= 0.5


def test_label_recovery_refuses_mismatched_shapes():
  with pytest.raises(ValueError, match="must both be"):
    classifier.label_recovery(np.zeros((3, 2)), np.zeros((3, 3)))


def test_colorization_accuracy_uses_each_image_set():
  model = classifier.create(TINY)
  rng = np.random.default_rng(2)
  colour = rng.random((5, SIDE, SIDE, 3)).astype(np.float32)
  labels = classifier.predict(model, colour)
  gray = colour.mean(-1, keepdims=True)
  result = classifier.colorization_accuracy(model, colour, gray, colour, labels)
  assert result["true_colour"] == 1.0 and result["colorized"] == 1.0
  expected = np.mean(classifier.predict(model, np.repeat(gray, 3, -1)) == labels)
  assert result["grayscale"] == expected


def test_a_few_training_steps_lower_the_loss_on_a_fixed_batch():
  model = classifier.create(TINY)
  graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  config = train_classifier_cifar10.get_config()
  config.optim.update(lr=0.3, warmup_steps=1)
  tx = optim.make(classifier_training.optimizer_settings(config, 100))
  state = {"step": jnp.zeros((), jnp.int32), "params": params, "batch_stats": stats,
           "opt_state": tx.init(params)}
  step = classifier_training.make_train_step(graphdef, tx, label_smoothing=0.0,
                                             crop_padding=0,
                                             mesh=sharding.make_mesh(jax.devices()[:1]))
  rng = np.random.default_rng(3)
  images = rng.random((16, SIDE, SIDE, 3)).astype(np.float32)
  labels = rng.integers(0, 10, 16).astype(np.int32)
  losses = []
  for _ in range(6):
    state, step_metrics = step(state, images, labels, jax.random.key(0))
    losses.append(float(step_metrics["loss"]))
  assert losses[-1] < losses[0] - 0.1, losses
  assert int(state["step"]) == 6


def test_the_classifier_schedule_warms_up_then_decays_to_zero_at_the_last_step():
  config = train_classifier_cifar10.get_config()
  settings = classifier_training.optimizer_settings(config, 1000)
  rate = optim.learning_rate(settings)
  assert settings.name == "sgd_nesterov" and settings.weight_decay == 5e-4
  np.testing.assert_allclose([float(rate(100)), float(rate(550))], [0.2, 0.1], rtol=1e-6)
  assert float(rate(0)) < 0.01 < float(rate(50)) < 0.2 and float(rate(1000)) == 0.0


def test_augment_keeps_shape_and_pixels():
  images = jax.random.uniform(jax.random.key(0), (4, 8, 8, 3))
  out = classifier_training.augment(jax.random.key(1), images, 2)
  assert out.shape == images.shape
  # Flips and reflect-padded crops only move pixels: each output is a sub-image of the padded input.
  assert float(out.max()) <= float(images.max()) and float(out.min()) >= float(images.min())


def test_save_load_round_trip(tmp_path):
  model = classifier.create(TINY, seed=4)
  path = str(tmp_path / "classifier.npz")
  classifier.save(path, model, {"test_accuracy": 0.5})
  loaded, metadata = classifier.load(path)
  assert metadata["test_accuracy"] == 0.5 and loaded.config == TINY
  images = np.random.default_rng(5).random((3, SIDE, SIDE, 3)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(model(images)), np.asarray(loaded(images)))


def test_load_refuses_a_missing_file(tmp_path):
  with pytest.raises(CheckpointError, match="not found"):
    classifier.load(str(tmp_path / "nothing.npz"))


def test_load_refuses_another_architecture(tmp_path):
  path = str(tmp_path / "prior.npz")
  checkpoint_io.save_params(path, {"w": np.zeros(3)}, {"architecture": "score_unet"})
  with pytest.raises(CheckpointError, match="'score_unet'"):
    classifier.load(path)


def test_load_names_mismatched_parameters(tmp_path):
  path = str(tmp_path / "classifier.npz")
  classifier.save(path, classifier.create(TINY))
  with np.load(path) as saved:
    arrays = dict(saved)
  meta = json.loads(arrays["__metadata__"].tobytes())
  meta["config"]["widths"] = [4, 16]  # The file claims widths its arrays do not have.
  arrays["__metadata__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
  np.savez(path, **arrays)
  with pytest.raises(CheckpointError, match="wrong shape"):
    classifier.load(path)


def test_default_config_builds_the_documented_model():
  config = train_classifier_cifar10.get_config()
  model = nnx.eval_shape(lambda: classifier.create(classifier_training.model_config(config)))
  assert classifier.count_params(model) == 168_226


def test_the_committed_feature_network_classifies_the_exact_test_images_as_recorded(shared_data):
  """The default feature network (sample_quality.DEFAULT_CLASSIFIER) loads and reproduces
  the accuracy its metadata records on the 1,000 exact test images (docs/classifier.md:
  91.8 %); a different float summation order may flip an image or two (0.2 %)."""
  model, meta = classifier.load(sample_quality.DEFAULT_CLASSIFIER)
  assert classifier.count_params(model) == 1_973_186
  test = data.load({"source": "cifar10", "split": "test",
                    "path": str(shared_data / "cifar10" / "cifar10_exact_subset.npz")})
  assert len(test) == 1000
  assert meta["test_accuracy"] == pytest.approx(0.918)
  assert classifier.accuracy(model, test.images, test.labels) == pytest.approx(
      meta["test_accuracy"], abs=0.002)


def test_label_recovery_experiment_maps_indices_to_labels_and_checks_the_data(tmp_path):
  rng = np.random.default_rng(6)
  x = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
  y = np.arange(6) % 10
  np.savez(tmp_path / "cifar.npz", x_test=x, y_test=y)
  indices = np.array([[0, 3], [5, 1]])
  truth = x[indices].astype(np.float32) / 255
  (tmp_path / "config.json").write_text(json.dumps(
      {"data": {"source": "cifar10", "path": "/elsewhere/cifar.npz", "split": "test"}}))
  separations = {"indices": indices, "ground_truth": truth}
  labels = classifier.ground_truth_labels(str(tmp_path), separations,
                                              str(tmp_path / "cifar.npz"))
  np.testing.assert_array_equal(labels, y[indices])
  np.savez(tmp_path / "other.npz", x_test=x[::-1], y_test=y)
  with pytest.raises(ValueError, match="another dataset file"):
    classifier.ground_truth_labels(str(tmp_path), separations, str(tmp_path / "other.npz"))


def _tiny_cifar(tmp_path):
  """A training config of a tiny classifier on a labelled CIFAR-10-shaped file of 32
  training and 8 test images; (config, images, labels)."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, 40, dtype=np.int64)
  path = str(tmp_path / "cifar.npz")
  np.savez(path, x_train=images[:32], y_train=labels[:32], x_test=images[32:],
           y_test=labels[32:])
  config = train_classifier_cifar10.get_config()
  config.model.update(stem=4, widths=(4, 4, 4))
  config.data.path = config.test_data.path = path
  return config, images, labels


def test_training_writes_the_classifier_with_its_colour_and_grayscale_test_accuracy(tmp_path):
  """Two steps end to end on a tiny labelled CIFAR-10-shaped file: the saved classifier's
  metadata holds its accuracy on the test images and on their gray copies (mean of RGB,
  the colorization baseline), each what `classifier.accuracy` says of the saved model."""
  config, images, labels = _tiny_cifar(tmp_path)
  config.update(batch_size=16, max_steps=2)
  record = classifier_training.train(config, str(tmp_path / "run"),
                                     mesh=sharding.make_mesh(jax.devices()[:1]))
  model, meta = classifier.load(str(tmp_path / "run" / "classifier.npz"))
  test = images[32:].astype(np.float32) / 255.0
  gray = np.repeat(test.mean(-1, keepdims=True), 3, -1)
  assert meta["test_accuracy"] == record["test_accuracy"] == classifier.accuracy(
      model, test, labels[32:])
  assert meta["test_accuracy_grayscale"] == classifier.accuracy(model, gray, labels[32:])
  assert meta["test_accuracy_flip_tta"] == record["test_accuracy_flip_tta"] == (
      classifier.accuracy(model, test, labels[32:], flip_tta=True))
  assert record["step"] == 2


def test_flip_tta_predicts_an_image_and_its_mirror_alike_and_averages_their_softmax():
  model = classifier.create(TINY, seed=3)
  images = np.random.default_rng(0).uniform(size=(64, SIDE, SIDE, 3)).astype(np.float32)
  mirrored = images[:, :, ::-1]
  with_tta = classifier.predict(model, images, flip_tta=True)
  np.testing.assert_array_equal(with_tta, classifier.predict(model, mirrored, flip_tta=True))
  plain, of_mirror = classifier.predict(model, images), classifier.predict(model, mirrored)
  assert np.any(plain != of_mirror)  # The network itself is not mirror-invariant ...
  _, logits = classifier.features(model, images)
  _, logits_mirror = classifier.features(model, mirrored)
  probs = lambda z: np.exp(z - z.max(-1, keepdims=True)) / np.exp(
      z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)
  # ... and TTA picks the class of the mean of the two softmaxes.
  np.testing.assert_array_equal(with_tta, np.argmax(probs(logits) + probs(logits_mirror), -1))
  # A mirror-symmetric image gets its plain prediction.
  symmetric = (images + mirrored) / 2
  np.testing.assert_array_equal(classifier.predict(model, symmetric, flip_tta=True),
                                classifier.predict(model, symmetric))


def _tiny_run_config(tmp_path):
  config, _, _ = _tiny_cifar(tmp_path)
  config.update(batch_size=8, num_epochs=2, log_every=1, checkpoint_every=2)
  return config


def _params(path):
  with np.load(path) as f:
    return {k: f[k] for k in f.files if k != "__metadata__"}


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
  """8 steps straight, against 8 steps stopped by max_seconds after the first and rerun
  (from the Orbax checkpoint), and against that run's compact training_state.npz of step 1
  continued in an empty workdir: all three classifier.npz hold identical arrays."""
  mesh = sharding.make_mesh(jax.devices()[:1])
  config = _tiny_run_config(tmp_path)
  straight = classifier_training.train(config, str(tmp_path / "a"), mesh=mesh)
  assert straight["step"] == 8

  config.max_seconds = 1e-9  # Past after the first step: checkpoint at step 1, stop.
  stopped = classifier_training.train(config, str(tmp_path / "b"), mesh=mesh)
  assert stopped["step"] == 1 and "test_accuracy" not in stopped
  assert not (tmp_path / "b" / "classifier.npz").exists()
  shutil.copy(tmp_path / "b" / "training_state.npz", tmp_path / "state_1.npz")
  config.max_seconds = 0.0
  resumed = classifier_training.train(config, str(tmp_path / "b"), mesh=mesh)
  assert resumed["step"] == 8 and resumed["test_accuracy"] == straight["test_accuracy"]

  config.init_weights = str(tmp_path / "state_1.npz")  # Continued in an empty workdir.
  classifier_training.train(config, str(tmp_path / "d"), mesh=mesh)

  want = _params(tmp_path / "a" / "classifier.npz")
  for run in ("b", "d"):
    got = _params(tmp_path / run / "classifier.npz")
    assert sorted(got) == sorted(want)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=f"{run}: {key}")
  records = [json.loads(line) for line in open(tmp_path / "b" / "metrics.jsonl")]
  assert [r["step"] for r in records] == list(range(1, 9))  # Nothing logged twice.
  # Test accuracy at the stop (step 1) and at the epoch ends.
  assert [r["step"] for r in records if "test_accuracy" in r] == [1, 4, 8]


def test_a_changed_config_is_refused_on_resume(tmp_path):
  mesh = sharding.make_mesh(jax.devices()[:1])
  config = _tiny_run_config(tmp_path)
  config.max_steps = 2
  classifier_training.train(config, str(tmp_path / "run"), mesh=mesh)
  config.optim.lr = 0.05
  with pytest.raises(ConfigError, match="optim.lr"):
    classifier_training.train(config, str(tmp_path / "run"), mesh=mesh)
