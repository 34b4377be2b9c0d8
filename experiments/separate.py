"""Separate mixtures with BASIS: `python -m experiments.separate --config=CONFIG --workdir=DIR`.

Re-running the same command on the same workdir resumes: finished chunks are kept (with
the same config: a changed key that changes the results is refused unless
--allow_config_change).
"""


from basis_jax import cli

from basis_jax.sampling import separation
from configs import base_separation

_CONFIG, _WORKDIR, _ALLOW_CONFIG_CHANGE = cli.define_run_flags(
    "Separation config file.", "Output directory (resumed if it exists).", resumes=True)


def main(argv):
  del argv
  separation.run(_CONFIG.value, _WORKDIR.value, allow_config_change=_ALLOW_CONFIG_CHANGE.value,
                 log_file=True)


if __name__ == "__main__":
  cli.run(main, cpu_device_per_core=True, field_help=base_separation.FIELD_HELP)
