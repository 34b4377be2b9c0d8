"""The files of a separation run: saved config, chunk files, the index of finished chunks.

WORKDIR/config.json is compared with the command's config on resume; WORKDIR/chunks/
holds one atomically written file per (chunk, process); WORKDIR/index.json lists the
finished chunk ranges, written by process 0 after every process has written its rows,
with the SHA-256 of each chunk file. On resume a chunk whose file is missing or no longer
matches its checksum (truncated by a full disk, damaged in a copy) is dropped from the
index and computed again; chunks recorded before checksums were kept are trusted if
they load in full.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from basis_jax.files import atomic

from basis_jax import errors
from basis_jax.files.data_formats import file_digest
from basis_jax.errors import ConfigError

# Config keys that do not change any separated value; a resumed run may change them.
RESULT_INVARIANT_KEYS = ("batch_size", "distributed", "output", "max_device_memory_gb")
# Keys that change which mixtures (and ground truth) exist: finished chunks hold components
# of the old mixtures, so --allow_config_change cannot keep them beside the new ones.
MIXTURE_DEFINING_KEYS = ("data", "mixture", "mixing")
# Keys that change what a chunk holds (how many samples, which one is chosen): chunks of the
# old and new settings cannot be assembled into one separations.npz.
RESULT_SHAPE_KEYS = ("sampler.num_samples", "select", "sampler.prune_after", "sampler.survivors",
                     "sampler.snapshots")
# The digest of each component's prior weights file, saved in config.json beside the config
# (a weights file rewritten under the same path changes results without changing the config).
WEIGHTS_KEY = "prior_weights_sha256"

# Keys added to configs after runs were saved with them absent, and the value that
# reproduces those runs: resuming such a run is not a change of settings.
ADDED_KEY_DEFAULTS = {"select": "none", "sampler.prune_after": 0, "sampler.survivors": 1,
                      "sampler.metropolis": False,
                      # Training configs (train_resume.check_config compares them alike).
                      "train.finetune_steps_per_stage": [], "train.cooldown_fraction": 0.0}


def config_differences(saved: dict, current: dict, prefix: str = "",
                       invariant=RESULT_INVARIANT_KEYS) -> list[str]:
  """Dotted names of the keys that differ, skipping the top-level `invariant` keys."""
  keys = []
  for key in sorted(set(saved) | set(current)):
    name = prefix + key
    if not prefix and key in invariant:
      continue
    # A key added since a run was saved reads as its neutral default; a removed one as None.
    absent = ADDED_KEY_DEFAULTS.get(name)
    a, b = saved.get(key, absent), current.get(key, absent)
    if isinstance(a, dict) and isinstance(b, dict):
      keys += config_differences(a, b, name + ".", invariant)
    elif a != b:
      keys.append(name)
  return keys


def _config_dict(config) -> dict:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def validate_path(path: str) -> None:
  """Refuses a workdir that cannot be created, before anything is written."""
  parent = os.path.abspath(path)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise errors.UserError(f"cannot create workdir {path}: {parent} is a file.",
                           hint="choose a --workdir whose parent is a directory.")


class Workdir:
  """Files of one run; process 0 writes shared files, every process its own chunk parts."""

  def __init__(self, path: str):
    self.path = path
    self.chunk_dir = os.path.join(path, "chunks")
    os.makedirs(self.chunk_dir, exist_ok=True)

  def remove_stale_temporaries(self) -> int:
    """Deletes temporary files left by a killed writer (never a finished chunk)."""
    stale = [os.path.join(d, name) for d in (self.path, self.chunk_dir)
             for name in os.listdir(d) if name.startswith(".") and name.endswith(".tmp")]
    for path in stale:
      os.unlink(path)
    return len(stale)

  def file(self, name):
    return os.path.join(self.path, name)

  def chunk_file(self, start, stop, process):
    return os.path.join(self.chunk_dir, f"chunk_{start:08d}_{stop:08d}.p{process:03d}.npz")

  def read_index(self) -> dict:
    try:
      with open(self.file("index.json")) as f:
        return json.load(f)
    except FileNotFoundError:
      return {"chunks": []}

  def record_chunk(self, index: dict, start: int, stop: int, processes: int) -> None:
    """Adds [start, stop) to `index` with each part's SHA-256 and rewrites index.json.

    Process 0 only, once every process has written its part (None: that process held no
    rows of the chunk and wrote no file).
    """
    digests = []
    for process in range(processes):
      path = self.chunk_file(start, stop, process)
      digests.append(file_digest(path) if os.path.exists(path) else None)
    index["chunks"].append({"range": [start, stop], "processes": processes, "sha256": digests})
    atomic.write_json(self.file("index.json"), index)

  def drop_damaged_chunks(self, index: dict, process: int) -> list[str]:
    """Removes from `index` the chunks whose files are missing or damaged: one line each.

    Every process reaches the same verdict (they read the same files); each deletes its
    own part of a dropped chunk, so that no damaged file stays beside the recomputed one.
    """
    kept, lines = [], []
    for entry in index["chunks"]:
      start, stop = entry["range"]
      problem = self._chunk_problem(entry)
      if problem is None:
        kept.append(entry)
        continue
      lines.append(f"{problem}; computing mixtures [{start}, {stop}) again.")
      own = self.chunk_file(start, stop, process)
      if os.path.exists(own):
        os.unlink(own)
    index["chunks"] = kept
    return lines

  def _chunk_problem(self, entry: dict) -> str | None:
    start, stop = entry["range"]
    processes = entry.get("processes", 1)
    digests = entry.get("sha256")
    for process in range(processes):
      path = self.chunk_file(start, stop, process)
      name = os.path.relpath(path, self.path)
      expected = digests[process] if digests is not None else None
      if not os.path.exists(path):
        if digests is not None and expected is None:
          continue  # That process held no rows of this chunk.
        if digests is None and processes > 1:
          continue  # Recorded before checksums: no record of which parts exist.
        return f"chunk file {name} is missing"
      if digests is not None:
        if expected is None or file_digest(path) != expected:
          return (f"chunk file {name} is damaged (its SHA-256 differs from the one recorded "
                  "when it was written)")
      elif not loads_in_full(path):
        return f"chunk file {name} is damaged (it does not load)"
    return None

  def check_config(self, config, allow_change: bool,
                   weights_digests: list[str | None] | None = None) -> None:
    """Refuses to resume under a config (or prior weights) that change the results.

    `weights_digests`: one SHA-256 per component's prior weights file (None: no file).
    --allow_config_change mixes results of other settings or weights on purpose, but never
    beside other mixtures: keys under MIXTURE_DEFINING_KEYS are always refused.
    """
    current = _config_dict(config)
    if weights_digests is not None:
      current[WEIGHTS_KEY] = list(weights_digests)
    try:
      with open(self.file("config.json")) as f:
        saved = json.load(f)
    except FileNotFoundError:
      saved = None
    if saved is not None and WEIGHTS_KEY not in saved:
      saved[WEIGHTS_KEY] = current.get(WEIGHTS_KEY)  # Written before digests were recorded.
    # A run that stopped before its first chunk (e.g. on a user error) has nothing to mix.
    if saved is not None and saved != current and self.read_index()["chunks"]:
      changed = config_differences(saved, current)
      defining = [k for k in changed if k.split(".")[0] in MIXTURE_DEFINING_KEYS]
      if defining:
        raise errors.ConfigError(
            f"The workdir {self.path} holds separations of other mixtures; these keys change "
            f"which mixtures exist: {', '.join(defining)}. Finished chunks cannot be kept "
            "beside them (not even with --allow_config_change).", hint="Use a new --workdir.")
      shaping = [k for k in changed if k in RESULT_SHAPE_KEYS]
      if shaping:
        raise errors.ConfigError(
            f"The workdir {self.path} holds chunks of another sampling or selection setting; "
            f"these keys changed: {', '.join(shaping)}. Its finished chunks cannot be assembled "
            "with new ones (not even with --allow_config_change).",
            hint="re-run with the workdir's settings (its config.json), or use a new --workdir.")
      if changed and not allow_change:
        weights = (f" (prior weights file digests {saved[WEIGHTS_KEY]} -> "
                   f"{current[WEIGHTS_KEY]})" if WEIGHTS_KEY in changed else "")
        raise ConfigError(
            f"The workdir {self.path} holds results of a different config; these keys change the "
            f"results: {', '.join(changed)}{weights}.",
            hint="use a new --workdir, or pass --allow_config_change if you mean to mix results.")
    if jax.process_index() == 0:
      atomic.write_json(self.file("config.json"), current)


def plan_chunks(num_mixtures: int, batch_size: int,
                done: list[list[int]]) -> list[tuple[int, int]]:
  """Contiguous [start, stop) chunks of at most batch_size covering what is not done."""
  if batch_size < 1:  # The loop below would never advance.
    raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
  finished = np.zeros(num_mixtures, bool)
  for start, stop in done:
    finished[start:stop] = True
  chunks, start = [], 0
  while start < num_mixtures:
    if finished[start]:
      start += 1
      continue
    stop = start
    while stop < num_mixtures and not finished[stop] and stop - start < batch_size:
      stop += 1
    chunks.append((start, stop))
    start = stop
  return chunks


def loads_in_full(path: str) -> bool:
  """Whether every array of an .npz reads back (the zip's CRC checks every byte)."""
  try:
    with np.load(path) as archive:
      for name in archive.files:
        archive[name]  # pylint: disable=pointless-statement
  except Exception:  # pylint: disable=broad-except  # Damage surfaces as many types.
    return False
  return True


RESULT_FIELDS = ("components", "residual_norm", "score_norm", "acceptance", "snapshots", "samples",
                 "sample_scores", "chosen", "sample_index", "prune_scores")
