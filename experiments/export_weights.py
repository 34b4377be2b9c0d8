"""The weights a prior ships, from a training state: params and EMA, no optimizer moments.

  python -m experiments.export_weights --state=training/score_unet_mnist/weights.npz \
    --out=basis_jax/weights/score_unet_mnist.npz --float16 --compress

The package ships its score priors in 16 bits, deflated, as above (CIFAR-10's with
`--groups=ema`; loaded back as float32; tests/test_shipped_score_16bit.py and
tests/test_shipped_prior.py bound the change). Without the flags the file is float32.

The metadata (architecture, config, step, seed, σ range) is copied unchanged, so the
exported file loads with the prior's `load` and names the step it was taken at.
"""

import logging

from absl import flags

from basis_jax.files import checkpoint_io

from basis_jax import cli

_STATE = flags.DEFINE_string("state", None, "A compact training state (weights.npz).")
_OUT = flags.DEFINE_string("out", None, "Where to write the exported weights.")
_GROUPS = flags.DEFINE_list("groups", ["params", "ema"], "Top-level groups to keep.")
_FLOAT16 = flags.DEFINE_bool("float16", False, "Store floating arrays in 16 bits (read back "
                             "as float32).")
_COMPRESS = flags.DEFINE_bool("compress", False, "Deflate the file's entries.")
flags.mark_flags_as_required(["state", "out"])


def main(argv):
  del argv
  metadata = checkpoint_io.copy_groups(_STATE.value, _OUT.value, _GROUPS.value,
                                       compress=_COMPRESS.value, float16=_FLOAT16.value)
  logging.info("Wrote %s (%s) from %s, step %s.", _OUT.value, ", ".join(_GROUPS.value),
               _STATE.value, metadata.get("step"))


if __name__ == "__main__":
  cli.run(main)
