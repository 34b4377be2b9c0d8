"""Separate mixtures with BASIS: `python -m experiments.separate --config=CONFIG --workdir=DIR`.

Re-running the same command on the same workdir resumes: finished chunks are kept (with
the same config: a changed key that changes the results is refused unless
--allow_config_change).
"""

from absl import app, flags
from ml_collections import config_flags

from basis_jax import cli

from basis_jax.sampling import separation
from configs import base_separation

_CONFIG = config_flags.DEFINE_config_file("config", None, "Separation config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumed if it exists).")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool("allow_config_change", False,
                                         cli.ALLOW_CONFIG_CHANGE_HELP)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  separation.run(_CONFIG.value, _WORKDIR.value, allow_config_change=_ALLOW_CONFIG_CHANGE.value,
                 log_file=True)


if __name__ == "__main__":
  cli.run(main, cpu_device_per_core=True, field_help=base_separation.FIELD_HELP)
