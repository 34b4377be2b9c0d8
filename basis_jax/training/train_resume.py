"""How a training run continues: the compact training-state file and the resume checks.

- `save` / `load_into`: weights.npz, params (+ EMA or BN statistics, + optimizer state),
  the architecture, step and seed; with the optimizer state it is a complete training
  state (~11 MB for the shipped score network) from which `config.init_weights` resumes
  exactly, because the data order and noise derive from (seed, step).
- `check_config` / `record_config`: a resumed run must train the same thing (changed result
  keys refused, for every trainer), then config.json is written.
(The loop itself, with its metrics.jsonl writer, is `basis_jax.training.training_loop`.)
"""

from __future__ import annotations

import json
import logging
import os

import jax
import jax.numpy as jnp

from basis_jax.files import atomic, checkpoint_io, workdir
from basis_jax.errors import ConfigError

# Config keys a resumed run may change: they do not change the trained weights.
# (allow_config_change: a config field before it became the --allow_config_change flag;
# older workdirs' config.json still hold it.)
RESUME_INVARIANT_KEYS = ("num_steps", "max_seconds", "log_every", "checkpoint_every",
                         "max_to_keep", "sampling", "distributed", "heldout_every",
                         "compact_opt_state", "allow_config_change")


def load_into(path: str, state: dict, *, architecture: str, model_config: dict,
              seed: int) -> dict:
  """`state` with the groups `path` holds (params; + EMA, + optimizer state and step).

  A bare parameter file (e.g. converted from PyTorch) starts a run from those weights; a
  file with the optimizer state continues the run exactly (same seed required).
  """
  metadata = checkpoint_io.read_metadata(path)
  if metadata.get("architecture", architecture) != architecture:
    raise checkpoint_io.CheckpointError(
        f"{path} holds a {metadata.get('architecture')!r} network, but config.model builds "
        f"{architecture!r}.")
  arch = lambda d: {k: v for k, v in d.items() if k != "dtype"}  # dtype is compute only.
  if "config" in metadata and arch(metadata["config"]) != arch(model_config):
    raise checkpoint_io.CheckpointError(
        f"{path} was written for the architecture {arch(metadata['config'])}, but config.model "
        f"builds {arch(model_config)}; the weights cannot be loaded into it.")
  groups = checkpoint_io.list_groups(path)
  abstract = jax.eval_shape(lambda: state)
  if "params" not in groups:  # A bare parameter file, e.g. converted from PyTorch.
    params, _ = checkpoint_io.load_params(path, abstract["params"])
    loaded = {"params": params}
  else:
    target = {g: abstract[g] for g in ("params", "ema", "batch_stats", "opt_state")
              if g in groups and g in state}
    loaded, meta = checkpoint_io.load_params(path, target, allow_unexpected=True)
    if "opt_state" in loaded:  # Only a file with the optimizer state continues the count.
      loaded["step"] = jnp.asarray(meta.get("step", 0), jnp.int32)
      if meta.get("seed", seed) != seed:
        raise ConfigError(f"{path} is a training state of seed {meta['seed']}, but "
                          f"config.seed={seed}: the data order would not continue.")
  new = dict(state, **loaded)
  if "ema" in state and "ema" not in loaded:
    new["ema"] = jax.tree.map(jnp.copy, new["params"])
  logging.info("Initialised from %s (%s).", path, ", ".join(sorted(loaded)))
  return new


def save(path: str, state: dict, *, architecture: str, model_config: dict, seed: int,
         noise_meta: dict, include_opt_state: bool = False) -> None:
  """params (+ EMA, + optimizer state) and the architecture, readable by the prior's `load`.

  With the optimizer state the file is a complete training state: `init_weights` resumes
  from it exactly (the data order and noise derive from (seed, step)).
  """
  groups = ["params", "ema", "batch_stats"] + (["opt_state"] if include_opt_state else [])
  tree = {g: state[g] for g in groups if g in state}
  meta = {"architecture": architecture, "config": model_config, "step": int(state["step"]),
          "seed": int(seed), **noise_meta}
  # A complete state is committed between sessions: deflate it (~7 % smaller).
  checkpoint_io.save_params(path, tree, meta, compress=include_opt_state)


def check_config(config, run_dir: str, invariant=RESUME_INVARIANT_KEYS, *,
                 allow_config_change: bool = False) -> None:
  """A resumed run must train the same thing: refuse changed result keys, listed.

  `invariant` names the keys that may change (dotted for nested ones, e.g. 'train.log_every',
  a section for all its keys); the comparison itself is `workdir.config_differences`.
  `allow_config_change` (the programs' --allow_config_change) continues anyway.
  """
  path = os.path.join(run_dir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = json.load(f)
  current = json.loads(config.to_json_best_effort(sort_keys=True))
  changed = [key for key in workdir.config_differences(saved, current, invariant=())
             if not any(key == name or key.startswith(name + ".") for name in invariant)]
  if changed and not allow_config_change:
    raise ConfigError(
        f"The workdir {run_dir} holds a training run of a different config; these keys change "
        f"what is trained: {', '.join(changed)}.",
        hint="use a new --workdir, or pass --allow_config_change to continue anyway "
             "(the run then mixes two settings).")


def record_config(config, run_dir: str, invariant=RESUME_INVARIANT_KEYS, *,
                  allow_config_change: bool = False) -> None:
  """`check_config`, then config.json beside the run (the config of its latest start)."""
  check_config(config, run_dir, invariant, allow_config_change=allow_config_change)
  if jax.process_index() == 0:
    atomic.write_json(os.path.join(run_dir, "config.json"),
                      json.loads(config.to_json_best_effort(sort_keys=True)))
