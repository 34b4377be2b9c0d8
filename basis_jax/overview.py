"""A parameter overview at start-up (clu), for training and separation runs alike."""

from __future__ import annotations

import logging

import jax
import numpy as np
from clu import parameter_overview

from basis_jax.files import checkpoint_io


def count_params(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


def log_parameter_overview(params, name: str = "model", max_lines: int = 40) -> None:
  flat, _ = checkpoint_io.flatten(params)
  flat = {k: np.asarray(v) for k, v in flat.items()}
  # The table goes to the run's log file only (basis_jax.cli shows root-logger lines).
  table = parameter_overview.get_parameter_overview(flat, include_stats=False,
                                                    max_lines=max_lines)
  logging.getLogger(__name__).info("%s parameters:\n%s", name, table)
  logging.info("%s: %s parameters in total.", name, f"{count_params(params):,}")
