"""Train a Glow and fine-tune it on x + N(0, σ²) for every σ of the separation ladder.

    python -m experiments.train_glow --config=configs/train_glow_mnist.py \
        --workdir=/tmp/glow_mnist --config.data.path=/path/to/mnist

Re-running the same command resumes from the last checkpoint in the workdir (with the same
settings: a changed key that changes the weights is refused unless --allow_config_change).
The result, WORKDIR/glow_sigmas.npz, is the `weights` of a Glow prior (configs/mnist_glow.py).
With --config.init_weights=clean.npz the clean stage is skipped (e.g. a converted model).
With --config.grow_from=clean.npz (a trained clean model of a smaller width) the clean stage
starts from that model widened to config.model.width, with its density unchanged.
"""

import json
import logging
import os

import jax
import numpy as np
from flax import nnx

from basis_jax import cli, config_help

from basis_jax.files import data as data_lib
from basis_jax.training import glow_training, train_resume
from basis_jax.priors import glow

_CONFIG, _WORKDIR, _ALLOW_CONFIG_CHANGE = cli.define_run_flags(
    "Training config file.", "Output directory (resumed if it exists).", resumes=True)


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  config_help.require(config, ("model.data_shape", "data", "eval_split", "eval_first_example",
                               "init_weights", "grow_from"),
                      hint="start from configs/train_glow_mnist.py, which sets every field.")
  model_config = glow.GlowConfig.from_config(config.model)
  options = glow_training.options_from_config(config)
  os.makedirs(workdir, exist_ok=True)
  # A resumed run with other train.* settings would mix two settings: refused, keys named.
  train_resume.record_config(config, workdir, invariant=glow_training.RESUME_INVARIANT_KEYS,
                             allow_config_change=_ALLOW_CONFIG_CHANGE.value)
  # The Glow's data space: dataset images as the model takes them (MNIST: padded to 32×32×3).
  space = glow.data_space(model_config, config.model.data_shape)
  train_images = space.to_prior(data_lib.load(config.data).images)
  eval_data = dict(config.data)
  eval_data.update(split=config.eval_split, first_example=config.eval_first_example,
                   num_examples=options.eval_batch_size)
  eval_images = space.to_prior(data_lib.load(eval_data).images)
  num_params = sum(int(np.prod(a.shape)) for a in
                   jax.tree.leaves(nnx.state(glow.Glow(model_config))))
  logging.info("Glow %s: %.2fM parameters; %d training images; σ ladder %s.", model_config,
               num_params / 1e6, len(train_images), options.sigmas)
  result = glow_training.train(model_config, options, train_images, eval_images, workdir,
                               init_weights=config.init_weights or None,
                               grow_from=config.grow_from or None)
  logging.info("Done: %s", json.dumps(result["metrics"]))


if __name__ == "__main__":
  cli.run(main, log_name="train.log")
