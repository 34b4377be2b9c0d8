r"""The S posterior samples of one mixture of a finished run, side by side (paper Figure 5).

  python -m experiments.separate --config=configs/cifar_unet.py --workdir=DIR \
      --config.sampler.num_samples=8
  python -m experiments.posterior_samples --workdir=DIR --mixture=0

Reads DIR/separations.npz: every sample is there when the run kept all S
(`select='none'`, `components` [N, S, k, ...]) or chose one (`samples`). Writes
DIR/posterior_samples_<mixture>.png (or --out): one row per component, columns the mixture,
the truth, then the S samples, each reordered to match the truth.
"""

import logging

from absl import flags

from basis_jax import cli
from basis_jax.evaluation import visualize

_WORKDIR = flags.DEFINE_string("workdir", None, "The separation run (experiments.separate).")
_MIXTURE = flags.DEFINE_integer("mixture", 0, "Which mixture (its position in separations.npz).")
_OUT = flags.DEFINE_string("out", None, "Where to write the PNG (default: in the workdir).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  path = visualize.write_posterior_samples(_WORKDIR.value, _MIXTURE.value, _OUT.value)
  logging.info("Wrote %s", path)


if __name__ == "__main__":
  cli.run(main)
