"""The one check of a separation config, section by section, before any work starts.

Every default of a separation config is written once, in configs/base_separation.py (each
config file starts from it); the code reads the fields and never supplies a default of its
own. `check(config)` reads every run-level section once and refuses, naming the field,
whatever would fail later: a missing field, a count below 1, a schedule, mixing, sampler
setting or selection criterion the sampler cannot run. It returns what it built, so no
later step reads or validates those sections again:

| section | built and checked by |
|---|---|
| `seed`, `num_mixtures`, `batch_size`, `max_device_memory_gb`, `select`, `output` | here |
| `schedule` | `schedules.from_config` (the `Schedule` it returns checks itself) |
| `mixture.num_components`, `mixing` | here, then `mixing.from_config` |
| `sampler` | `sampler.SamplerOptions.from_section` (the options check themselves) |

The other sections belong to what reads them, each checked once there, also before any
work: `prior` / `priors` by the prior's loader (`basis_jax.priors.load`), `data` and
`mixture` by `files.mixtures`, `distributed` by `files.sharding`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from basis_jax import config_help
from basis_jax.errors import ConfigError
from basis_jax.sampling import mixing as mixing_lib
from basis_jax.sampling import sampler, schedules, selection

BASE = "configs/base_separation.py"


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """The run-level sections of a separation config, read and checked once."""

  schedule: schedules.Schedule
  mixing: mixing_lib.MixingOperator
  num_components: int
  # config.sampler; an empty init (the prior's own start) is resolved by `options_for`.
  sampler_section: Any
  select: str
  max_device_memory_gb: float
  grid_rows: int
  component_pngs: bool

  def options_for(self, default_init) -> sampler.SamplerOptions:
    """The sampler options, with the prior's start where config.sampler.init is empty."""
    return sampler.SamplerOptions.from_section(self.sampler_section, default_init)


def field(config, path: str) -> Any:
  """config's field at a dotted `path`; a missing one is refused, naming it."""
  return config_help.field(config, path, hint=f"every separation config starts from {BASE}, "
                                              "which sets each field with its default.")


def _at_least_one(config, path: str, hint: str) -> None:
  value = field(config, path)
  if value is not None and int(value) < 1:
    raise ConfigError(f"{path} must be at least 1, got {value}.", hint=hint)


def check(config) -> RunSettings:
  """Reads and checks the run-level sections of a separation config (module docstring)."""
  field(config, "seed")
  _at_least_one(config, "batch_size", "--config.batch_size=N sets how many mixtures run per "
                "chunk.")
  for name in ("num_mixtures", "mixture.num_mixtures"):
    # 0 used to fall through to "the whole test set" (10,000 mixtures): ask for that by number.
    _at_least_one(config, name, "to separate the whole test set give its size, e.g. "
                  f"--config.{name}=10000.")
  schedule = schedules.from_config(field(config, "schedule"))
  k = field(config, "mixture.num_components")
  if k < 1:
    raise ConfigError(f"mixture.num_components (k) must be >= 1, got {k}.")
  mixing = mixing_lib.from_config(field(config, "mixing"), num_components=k)
  section = field(config, "sampler")
  # Every field but the start is checked now; the start may be the prior's (options_for).
  sampler.SamplerOptions.from_section(section, {"init": "uniform"})
  memory_gb = float(field(config, "max_device_memory_gb"))
  if memory_gb < 0:
    raise ConfigError(f"max_device_memory_gb must be >= 0 (0: the device's limit), got "
                      f"{memory_gb}.")
  grid_rows = int(field(config, "output.grid_rows"))
  if grid_rows < 1:
    raise ConfigError(f"output.grid_rows must be >= 1, got {grid_rows}.")
  return RunSettings(schedule, mixing, int(k), section,
                     selection.check_criterion(field(config, "select")), memory_gb,
                     grid_rows, bool(field(config, "output.component_pngs")))
