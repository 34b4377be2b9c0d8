"""Held-out bits/dim of a Glow training state's current parameters, mid-stage.

`experiments.train_glow` measures held-out bits/dim only when a stage ends (the clean
stage of the width-128 MNIST Glow took 20,000 steps, over several sessions). This
reads the parameters of a compact training state (`training_state.npz`) and measures them
exactly as the trainer does at a stage's end: the same 1,000 held-out images (training
images 58,000-58,999), the same dequantisation draw, σ = 0 (the clean stage) unless
`--sigma` asks for the noise of a σ stage (e.g. σ = 0.01: what the first σ stage starts
from). Given `--compare`, a clean model file (e.g. the shipped
`training/glow_mnist/glow_clean.npz`) is measured the same way beside it.

    python -m studies.glow_state_heldout --data_path=/path/to/mnist \
        --state=training/glow_mnist_w128/training_state.npz \
        --compare=training/glow_mnist/glow_clean.npz
"""

from absl import app, flags
from flax import nnx

from basis_jax.files import checkpoint_io
from basis_jax.files import data as data_lib
from basis_jax.priors import glow
from basis_jax.training import glow_training, glow_workdir, optim
from configs import train_glow_mnist

_DATA = flags.DEFINE_string("data_path", None, "MNIST directory (the four idx .gz files).",
                            required=True)
_STATE = flags.DEFINE_string("state", None, "A Glow compact training state.", required=True)
_COMPARE = flags.DEFINE_string("compare", "", "A clean Glow file measured beside it.")
_SIGMA = flags.DEFINE_float("sigma", 0.0, "The noise σ of the held-out images (0: clean).")


def main(argv):
  del argv
  config = train_glow_mnist.get_config()
  metadata = checkpoint_io.read_metadata(_STATE.value)
  model_config, model = glow_workdir.model_from_state(_STATE.value)
  data = dict(config.data)
  data.update(path=_DATA.value, split=config.eval_split,
              first_example=config.eval_first_example,
              num_examples=config.train.eval_batch_size)
  space = glow.data_space(model_config, config.model.data_shape)
  images = space.to_prior(data_lib.load(data).images)
  key = glow_training.held_out_key(int(metadata["seed"]))
  optimizer = optim.settings_from_config(config.optim)

  def measure(model_config, model):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    _, _, eval_bpd = glow_training.make_steps(graphdef, model_config, optimizer)
    return float(eval_bpd(params, rest, images, key, _SIGMA.value))

  progress = metadata["progress"]
  print(f"{_STATE.value}: stage {progress['stage']}, step {progress['step']}: held-out "
        f"{measure(model_config, model):.4f} bits/dim at σ = {_SIGMA.value:g} "
        f"({len(images)} images)")
  if _COMPARE.value:
    other = glow.load_weights(_COMPARE.value)
    print(f"{_COMPARE.value}: held-out "
          f"{measure(other.config, nnx.merge(other.graphdef, other.state)):.4f} bits/dim")


if __name__ == "__main__":
  app.run(main)
