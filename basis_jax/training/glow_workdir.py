"""The files of a Glow training run (`glow_training.train`) and its compact training state.

A workdir holds the σ ladder it is trained for (`sigmas.json`), each finished stage's model
(`glow_clean.npz`, `sigma_XX.npz`, labelled with the σ it was trained at), all σ stacked
(`glow_sigmas.npz`, largest σ first, as `basis_jax.priors.glow.load` expects), the held-out
records per stage (`metrics.jsonl`), the training windows (`train_metrics.jsonl`) and the
Orbax checkpoints, one block per stage. `training_state.npz` packs what a resume needs into
one compressed file (the current stage's parameters and Adamax state, its progress, every
finished stage's parameters, the model's fixed variables and the held-out records), so a run
continues exactly in an empty workdir: this module writes it, reads it back, and reads a
model out of it.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING

import jax
import numpy as np
from flax import nnx

from basis_jax import errors
from basis_jax.files import atomic, checkpoint_io
from basis_jax.priors import glow
from basis_jax.training import training_loop

if TYPE_CHECKING:
  from basis_jax.training.glow_training import TrainOptions

CLEAN_FILE = "glow_clean.npz"
STACKED_FILE = "glow_sigmas.npz"
LADDER_FILE = "sigmas.json"  # The ascending ladder the workdir is trained for.
METRICS_FILE = "metrics.jsonl"  # Held-out bits/dim before and after each stage.
STEPS_FILE = "train_metrics.jsonl"  # One record per log window (the loop's MetricsLog).
STATE_FILE = "training_state.npz"  # The compact training state, rewritten at each checkpoint.


def check_ladder(workdir: str, options: TrainOptions) -> None:
  """Records the σ ladder of the workdir's first run and refuses to resume under another.

  A checkpoint taken mid-stage would otherwise continue (and label) the stage at a new σ.
  """
  path = os.path.join(workdir, LADDER_FILE)
  current = list(options.ascending_sigmas)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)["sigmas"]
    if len(saved) != len(current) or not np.allclose(saved, current, rtol=1e-6, atol=0):
      raise errors.ConfigError(
          f"{workdir} was trained with the σ ladder {tuple(saved)}, but this run asks for "
          f"{tuple(current)}.", hint="Resume with the same ladder, or use a new workdir.")
  else:
    atomic.write_json(path, {"sigmas": current})


def stage_path(workdir: str, stage: int) -> str:
  """The file of a finished stage: the clean model (stage 0) or the σ stage's."""
  return os.path.join(workdir, CLEAN_FILE if stage == 0 else f"sigma_{stage:02d}.npz")


def save_stage(workdir: str, stage: int, model_config: glow.GlowConfig, state,
               options: TrainOptions) -> None:
  """A finished stage's model (an nnx state of `model_config`), labelled with its σ."""
  glow.save_weights(stage_path(workdir, stage), model_config, state,
                    stage_sigma=options.stage_sigma(stage))


def load_stage(workdir: str, options: TrainOptions, stage: int) -> glow.GlowWeights:
  """A finished σ stage's weights, refused unless it was trained at this run's σ for the stage.

  A resumed run with another ladder would otherwise label old files with new σ values,
  which `glow.load`'s σ check then accepts.
  """
  path = stage_path(workdir, stage)
  weights = glow.load_weights(path)
  stored, expected = weights.metadata.get("stage_sigma"), options.stage_sigma(stage)
  if stored is None or not np.isclose(float(stored), expected, rtol=1e-6, atol=0):
    raise errors.ConfigError(
        f"{path} was fine-tuned at σ = {stored}, but this run's ladder "
        f"{options.ascending_sigmas} puts σ = {expected:.6g} at stage {stage}.",
        hint="Resume with the ladder the workdir was trained with, or use a new workdir.")
  return weights


def write_stacked(workdir: str, model_config: glow.GlowConfig, options: TrainOptions) -> None:
  """All σ stacked, largest σ first (the sampler's level order)."""
  states, sigmas = [], []
  for stage in range(len(options.sigmas), 0, -1):
    weights = load_stage(workdir, options, stage)
    states.append(weights.state)
    sigmas.append(float(weights.metadata["stage_sigma"]))
  shared = None
  if options.finetune_params == "modulation":  # The rest is the clean model's: stored once.
    shared = jax.tree.map(lambda m: not m, glow.modulation_mask(states[0]))
  glow.save_weights(os.path.join(workdir, STACKED_FILE), model_config,
                    glow.stack_states(states, shared), sigmas=sigmas,
                    per_sigma=options.finetune_params)


def read_metrics(workdir: str) -> list[dict]:
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def write_metrics(workdir: str, metrics: list[dict]) -> None:
  with atomic.atomic_open(os.path.join(workdir, METRICS_FILE), "w") as f:
    f.writelines(json.dumps(m) + "\n" for m in metrics)


def restore_latest(checkpoints: training_loop.OrbaxCheckpoints, params, opt_state):
  """(params, opt_state, progress dict) of the directory's latest checkpoint (any stage)."""
  checkpoints.block = checkpoints.latest_block()
  checkpoints.extra = {"stage_start_bpd": 0.0}  # The structure of the saved progress.
  state, done = checkpoints.restore({"params": params, "opt_state": opt_state})
  progress = {"stage": checkpoints.block, "step": done.step, "lr_scale": done.lr_scale,
              "restarts": done.restarts,
              "stage_start_bpd": float(checkpoints.restored_extra["stage_start_bpd"])}
  return state["params"], state["opt_state"], progress


# -- the compact training state ------------------------------------------------------------


def is_training_state(path: str) -> bool:
  """Whether `path` is a compact Glow training state (not a weights file)."""
  return bool(checkpoint_io.read_metadata(path).get("glow_training_state"))


def model_from_state(path: str) -> tuple[glow.GlowConfig, glow.Glow]:
  """The model a compact training state is training, with its current parameters and its
  fixed variables (e.g. an LU model's permutation): to measure a run mid-stage."""
  if not is_training_state(path):
    raise errors.InputFileError(f"{path} is not a compact Glow training state.")
  model_config = glow.config_from_json(checkpoint_io.read_metadata(path)["glow_config"])
  graphdef, params, rest = nnx.split(glow.Glow(model_config), nnx.Param, ...)
  tree, _ = checkpoint_io.load_params(path, {"params": nnx.to_pure_dict(params)},
                                      allow_unexpected=True)
  nnx.replace_by_pure_dict(params, tree["params"])
  return model_config, nnx.merge(graphdef, params, restore_fixed_variables(path, rest))


def pack_state(workdir: str, model_config: glow.GlowConfig, options: TrainOptions,
               first_stage: int, checkpoints: training_loop.OrbaxCheckpoints, fixed,
               opt_state_shape) -> None:
  """Writes STATE_FILE from the workdir's latest checkpoint and its finished stage files
  (read back from disk, so the file holds exactly what a resume would restore), with the
  model's fixed (non-trained) variables `fixed`: e.g. an LU model's permutation, which a
  `grow_from` run takes from the narrow model, not from its own seed. `opt_state_shape`:
  the optimizer state's structure (e.g. `jax.eval_shape` of its init)."""
  if checkpoints.latest_block() is None or jax.process_index() != 0:
    return
  _, params, _ = nnx.split(nnx.eval_shape(lambda: glow.Glow(model_config)), nnx.Param, ...)
  block, extra = checkpoints.block, checkpoints.extra
  params, opt_state, progress = restore_latest(checkpoints, params, opt_state_shape)
  checkpoints.block, checkpoints.extra = block, extra
  tree = {"params": nnx.to_pure_dict(params), "opt_state": opt_state, "stages": {
      f"{stage:02d}": nnx.to_pure_dict(load_stage(workdir, options, stage).state)
      for stage in range(1, progress["stage"])}}
  if jax.tree.leaves(fixed):
    tree["fixed"] = jax.tree.map(np.asarray, nnx.to_pure_dict(fixed))
  metadata = {"architecture": "glow", "glow_training_state": True,
              "glow_config": glow.config_to_json(model_config), "progress": progress,
              "first_stage": first_stage, "sigmas": list(options.ascending_sigmas),
              "seed": options.seed, "metrics": read_metrics(workdir)}
  checkpoint_io.save_params(os.path.join(workdir, STATE_FILE), tree, metadata, compress=True)


def _has_fixed_variables(path: str) -> bool:
  return any(key.startswith("fixed/") for key in checkpoint_io.list_keys(path))


def restore_fixed_variables(path: str, rest):
  """`rest` (the model's fixed variables) with the values a training state holds; a state
  without them (none to hold, or written before they were stored) leaves `rest` as it is."""
  if not jax.tree.leaves(rest) or not _has_fixed_variables(path):
    return rest
  tree, _ = checkpoint_io.load_params(path, {"fixed": nnx.to_pure_dict(rest)},
                                      allow_unexpected=True)
  nnx.replace_by_pure_dict(rest, tree["fixed"])
  return rest


def unpack_state(path: str, workdir: str, checkpoints: training_loop.OrbaxCheckpoints,
                 model_config: glow.GlowConfig, options: TrainOptions, params,
                 opt_state) -> None:
  """Turns a compact training state into the workdir's first checkpoint, its finished stage
  files and metrics, so the run continues exactly where the state was written."""
  metadata = checkpoint_io.read_metadata(path)
  if metadata.get("glow_config") != glow.config_to_json(model_config):
    raise errors.ConfigError(f"{path} is a training state of the Glow "
                             f"{metadata.get('glow_config')}, but config.model builds "
                             f"{glow.config_to_json(model_config)}.")
  saved = metadata["sigmas"]
  if len(saved) != len(options.sigmas) or not np.allclose(saved, options.ascending_sigmas,
                                                          rtol=1e-6, atol=0):
    raise errors.ConfigError(f"{path} was trained with the σ ladder {tuple(saved)}, but this "
                             f"run asks for {options.ascending_sigmas}.")
  if metadata.get("seed") != options.seed:
    raise errors.ConfigError(f"{path} is a training state of seed {metadata.get('seed')}, but "
                             f"config.train.seed={options.seed}: the data order would not "
                             "continue.")
  progress = metadata["progress"]
  full_state = nnx.state(nnx.eval_shape(lambda: glow.Glow(model_config)))
  stages = {f"{stage:02d}": nnx.to_pure_dict(full_state)
            for stage in range(1, progress["stage"])}
  abstract = jax.eval_shape(lambda: {"params": nnx.to_pure_dict(params),
                                     "opt_state": opt_state, "stages": stages})
  if _has_fixed_variables(path):  # Read by the trainer (`restore_fixed_variables`).
    abstract["fixed"] = nnx.to_pure_dict(
        nnx.split(nnx.eval_shape(lambda: glow.Glow(model_config)), nnx.Param, ...)[2])
  tree, _ = checkpoint_io.load_params(path, abstract)
  for stage, values in tree["stages"].items():
    state = nnx.state(glow.Glow(model_config))
    nnx.replace_by_pure_dict(state, values)
    save_stage(workdir, int(stage), model_config, state, options)
  nnx.replace_by_pure_dict(params, tree["params"])
  write_metrics(workdir, metadata.get("metrics", []))
  checkpoints.block = int(progress["stage"])
  checkpoints.extra = {"stage_start_bpd": float(progress["stage_start_bpd"])}
  checkpoints.save(int(progress["step"]), {"params": params, "opt_state": tree["opt_state"]},
                   training_loop.Progress(int(progress["step"]), float(progress["lr_scale"]),
                                          int(progress["restarts"])))
  logging.info("Continuing from the training state %s: stage %d, step %d.", path,
               progress["stage"], progress["step"])
