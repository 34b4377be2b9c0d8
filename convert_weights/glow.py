"""Converts Glow weights to a basis-jax weights file.

Three sources:

* PyTorch: the state dict of y0ast/Glow-PyTorch (github.com/y0ast/Glow-PyTorch, layout as
  of commit 13c7b013dde32600e732416f2ed15438d686636f), a widely used port of openai/glow:

      python -m convert_weights.glow --checkpoint=glow_model_250.pth --out=glow.npz

  The architecture (image size, levels, depth, width, coupling, LU, learned top prior) is
  read off the tensor shapes. That port pads its 3×3 convolutions with zeros (no openai
  edge channel) and stores actnorm log-scales without openai's ×3 factor; the converted
  model uses `edge_padding=False` and the log-scales are divided by 3 on the way in.
  Class-conditional models (`y_condition`) and the 'shuffle'/'reverse' permutations are
  not supported and are refused by name.

* TensorFlow: an openai/glow or BASIS checkpoint, read through TensorFlow (the `tf` extra):

      python -m convert_weights.glow --tf_checkpoint=logs/model_best_loss.ckpt --out=glow.npz

  Only the model's variables are used (not the Polyak-average copies or Adamax moments the
  original's saver also writes); the architecture is read off them except the image size
  (`--image_size`, default 32) and `--n_bits` (default 8). `--nolearn_top` drops the
  learned top prior, as BASIS's separation script restores without it. Verified against
  the original code's outputs (tests/fixtures/glow_tf/). Not supported, refused by name:
  the 'reverse'/'shuffle' permutations, LU, class conditioning.

* BASIS's fine-tuned ladder (one folder per σ, `logs1point0/` … `logs0point01/`, each with
  model_best_loss.ckpt) into the one stacked σ file `glow.load` reads:

      python -m convert_weights.glow --tf_ladder=finetuned/cifar10 --out=glow_sigmas.npz

  The σ ladder is `--sigma_max`, `--sigma_min`, `--num_levels` (geometric; default BASIS's
  1 → 0.01 in 10); a σ without a folder, a folder off the ladder, or (`--tf_checkpoints=a,b,…`,
  largest σ first) a list out of order is refused, naming it.

The mapping is strict: every source tensor is consumed and every Flax parameter assigned
with the right shape, or the error lists the missing, unexpected and mis-shaped tensors.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Mapping, Sequence

import jax
import numpy as np
from absl import app, flags
from flax import nnx

from basis_jax.files import checkpoint_io

from basis_jax import cli

from basis_jax.sampling import schedules
from basis_jax.errors import (ConfigError, InputFileError, MissingDependencyError,
                             MissingFileError)
from basis_jax.priors import glow
from basis_jax.priors.glow_layers import LOGSCALE_FACTOR
from convert_weights import torch_io



@dataclasses.dataclass(frozen=True)
class Rule:
  """How one source tensor becomes one Flax parameter."""

  source_key: str
  layout: str  # 'same', 'oihw' (torch conv), 'transpose', or 'vector'.
  source_prefix: tuple[int, ...] = ()  # 'vector': leading singleton dims in the source.
  source_suffix: tuple[int, ...] = ()  # 'vector': trailing singleton dims in the source.
  scale: float = 1.0

  def source_shape(self, flax_shape: tuple[int, ...]) -> tuple[int, ...]:
    if self.layout == "oihw":
      h, w, i, o = flax_shape
      return (o, i, h, w)
    if self.layout == "transpose":
      return tuple(reversed(flax_shape))
    if self.layout == "vector":
      return self.source_prefix + tuple(flax_shape) + self.source_suffix
    return tuple(flax_shape)

  def apply(self, value: np.ndarray, flax_shape) -> np.ndarray:
    if self.layout == "oihw":
      value = np.transpose(value, (2, 3, 1, 0))
    elif self.layout == "transpose":
      value = value.T
    return (np.asarray(value, np.float32) * self.scale).reshape(flax_shape)


Table = dict[str, Rule]  # {flax key: rule}


# -- PyTorch (y0ast/Glow-PyTorch) ---------------------------------------------------------


def _glow_state_dict(obj):
  if isinstance(obj, Mapping):
    for wrapper in ("model", "state_dict"):
      if isinstance(obj.get(wrapper), Mapping):
        return obj[wrapper]
  return obj


def read_torch_checkpoint(path: str) -> dict[str, np.ndarray]:
  """The state dict in `path` (a bare state dict, or one held under 'model' or
  'state_dict')."""
  return torch_io.read_state_dict(path, _glow_state_dict)


def _torch_layer_index(level: int, depth: int) -> int:
  # Each level of FlowNet.layers is [squeeze, K flow steps, split (not at the top)].
  return level * (depth + 2)


def infer_torch_config(state: Mapping[str, np.ndarray]) -> glow.GlowConfig:
  """The architecture of a y0ast/Glow-PyTorch state dict, from its keys and shapes."""
  for unsupported, why in (("project_ycond.", "class-conditional (y_condition) models"),
                           ("shuffle.", "the 'shuffle' permutation"),
                           ("reverse.", "the 'reverse' permutation")):
    if any(unsupported in k for k in state):
      raise InputFileError(f"The checkpoint uses {why}, which the Flax Glow does not implement.")
  if "prior_h" not in state:
    raise InputFileError("The checkpoint has no 'prior_h'; is it a y0ast/Glow-PyTorch Glow state "
                         f"dict? First keys: {sorted(state)[:5]}")
  layer_keys = {}
  for key in state:
    m = re.fullmatch(r"flow\.layers\.(\d+)\.(.+)", key)
    if m:
      layer_keys.setdefault(int(m.group(1)), set()).add(m.group(2))
  steps = sorted(i for i, ks in layer_keys.items() if "actnorm.bias" in ks)
  splits = sorted(i for i, ks in layer_keys.items() if "conv.conv.weight" in ks)
  if not steps:
    raise InputFileError("The checkpoint has no flow steps (flow.layers.N.actnorm.bias).")
  levels = len(splits) + 1
  if len(steps) % levels:
    raise InputFileError(f"{len(steps)} flow steps do not divide into {levels} levels.")
  depth = len(steps) // levels
  first = f"flow.layers.{steps[0]}."
  for needed in ("block.0.conv.weight", "block.4.conv.weight"):
    if first + needed not in state:
      raise InputFileError(f"The checkpoint has no {first + needed!r}.")
  width, half = state[first + "block.0.conv.weight"].shape[:2]
  n_out = state[first + "block.4.conv.weight"].shape[0]
  _, top2c, top_h, top_w = state["prior_h"].shape
  factor = 2**levels
  return glow.GlowConfig(
      image_shape=(top_h * factor, top_w * factor, (2 * half) // 4),
      levels=levels, depth=depth, width=int(width),
      coupling="affine" if n_out == 2 * half else "additive",
      lu_decomposed=first + "invconv.lower" in state,
      learn_top="learn_top_fn.conv.weight" in state,
      edge_padding=False)


def torch_mapping(config: glow.GlowConfig) -> Table:
  """Every Flax parameter of `config` and the y0ast/Glow-PyTorch tensor it comes from."""
  table: Table = {}

  def zero_conv(flax_prefix, torch_prefix):
    table[flax_prefix + "kernel"] = Rule(torch_prefix + "conv.weight", "oihw")
    table[flax_prefix + "bias"] = Rule(torch_prefix + "conv.bias", "same")
    table[flax_prefix + "logs"] = Rule(torch_prefix + "logs", "vector", (), (1, 1))

  def actnorm(flax_prefix, torch_prefix):
    table[flax_prefix + "bias"] = Rule(torch_prefix + "bias", "vector", (1,), (1, 1))
    # The port stores log-scales without openai's ×3.
    table[flax_prefix + "logs"] = Rule(torch_prefix + "logs", "vector", (1,), (1, 1),
                                       scale=1.0 / LOGSCALE_FACTOR)

  for level in range(config.levels):
    base = _torch_layer_index(level, config.depth)
    for step in range(config.depth):
      f = f"levels/{level}/steps/{step}/"
      t = f"flow.layers.{base + 1 + step}."
      actnorm(f + "actnorm/", t + "actnorm.")
      if config.lu_decomposed:
        for name in ("lower", "upper", "log_s", "p", "sign_s"):
          table[f + "invconv/" + name] = Rule(t + "invconv." + name, "same")
      else:
        table[f + "invconv/weight"] = Rule(t + "invconv.weight", "same")
      for conv, index in (("conv1", 0), ("conv2", 2)):
        table[f + f"coupling_net/{conv}/kernel"] = Rule(t + f"block.{index}.conv.weight",
                                                        "oihw")
        actnorm(f + f"coupling_net/{conv}/actnorm/", t + f"block.{index}.actnorm.")
      zero_conv(f + "coupling_net/conv_out/", t + "block.4.")
    if level < config.levels - 1:
      zero_conv(f"levels/{level}/split_prior/", f"flow.layers.{base + 1 + config.depth}.conv.")
  if config.learn_top:
    zero_conv("top_prior/", "learn_top_fn.")
  return table


def _torch_ignored_shapes(config: glow.GlowConfig) -> dict[str, tuple[int, ...]]:
  """Buffers the port stores that carry no parameters: only the zero `prior_h`."""
  h, w, c = config.level_shapes()[-1]
  return {"prior_h": (1, 2 * c, h, w)}


# -- TensorFlow (openai/glow, BASIS) ------------------------------------------------------


def _is_tf_model_tensor(name: str) -> bool:
  # Besides the model, openai's (and BASIS's) train.py saves Polyak-average copies
  # ('…/ExponentialMovingAverage') and Adamax's moments and step, top-level 'Variable',
  # 'Variable_1', … (its tf.Variable calls pass no name).
  return name.startswith("model/") and not name.endswith("/ExponentialMovingAverage")


def read_tf_checkpoint(path: str) -> dict[str, np.ndarray]:
  """The model tensors of a TF checkpoint (`path`: its prefix, e.g. model_best_loss.ckpt)."""
  try:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise MissingDependencyError(
        "Reading an openai/BASIS TensorFlow Glow checkpoint needs TensorFlow, which is not "
        "installed.", hint="pip install -e '.[tf]' (tensorflow-cpu), or convert on a machine "
        "that has it; the converted .npz loads without TensorFlow.") from e
  try:
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if _is_tf_model_tensor(name)}
  except (tf.errors.OpError, ValueError) as e:
    raise InputFileError(f"Cannot read the TensorFlow checkpoint {path}: {e}") from e


def tf_model_tensors(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The model's own tensors: under 'model/', without the Polyak-average copies."""
  return {k: np.asarray(v, np.float32) for k, v in tensors.items() if _is_tf_model_tensor(k)}


def _tf_indices(tensors, pattern: str) -> list[int]:
  return sorted({int(m.group(1)) for m in map(re.compile(pattern).match, tensors) if m})


def infer_tf_config(tensors: Mapping[str, np.ndarray], image_size: int, learn_top: bool = True,
                    n_bits: int = 8) -> glow.GlowConfig:
  """The architecture of openai/glow model tensors (`tf_model_tensors`).

  The variables do not record the image size (`image_size`, square as openai's) or n_bits;
  the rest is read off names and shapes. `learn_top=False` drops a learned top prior, as
  BASIS's separation script does (it builds its graph without --learntop).
  """
  for marker, what in (("/shuffle/", "the 'shuffle' permutation (--flow_permutation 1)"),
                       ("/invconv/L", "the LU-decomposed 1×1 convolution"),
                       ("/y_emb/", "class conditioning (--ycond)"),
                       ("model/classifier/", "class conditioning (--ycond)")):
    if any(marker in k for k in tensors):
      raise InputFileError(f"The checkpoint uses {what}, which this converter does not support.")
  first = "model/0/0/"
  needed = [first + k for k in ("actnorm_center/b", "f1/l_1/W", "f1/l_last/W")]
  if any(k not in tensors for k in needed):
    raise InputFileError(f"The checkpoint holds no openai Glow (no {' or '.join(needed)}); "
                         f"first tensors: {sorted(tensors)[:5]}")
  if first + "invconv/W" not in tensors:
    raise InputFileError(f"The checkpoint has no {first}invconv/W: it was trained with the "
                         "'reverse' permutation (--flow_permutation 0), which is not supported.")
  channels = tensors[first + "actnorm_center/b"].shape[-1]
  try:
    return glow.GlowConfig(
        image_shape=(image_size, image_size, channels // 4),
        levels=len(_tf_indices(tensors, r"model/(\d+)/")),
        depth=len(_tf_indices(tensors, r"model/0/(\d+)/")),
        width=int(tensors[first + "f1/l_1/W"].shape[-1]),
        coupling="affine" if tensors[first + "f1/l_last/W"].shape[-1] == channels else "additive",
        learn_top=learn_top and "model/prior/p/W" in tensors, n_bits=n_bits)
  except ValueError as e:
    raise ConfigError(f"The checkpoint's Glow does not fit --image_size={image_size}: {e}") from e


def tf_mapping(config: glow.GlowConfig) -> Table:
  """Every Flax parameter and the openai/glow TF variable it comes from (NHWC already)."""
  if config.lu_decomposed:
    raise ConfigError("The LU-decomposed 1×1 convolution of openai/glow is disabled in its "
                      "code; only plain `invconv/W` TF checkpoints are supported.")
  if not config.edge_padding:
    raise ConfigError("openai/glow TF checkpoints use edge padding; set edge_padding=True.")
  table: Table = {}

  def zero_conv(flax_prefix, tf_prefix):  # tfops.conv2d_zeros; its logs are [1, C].
    table[flax_prefix + "kernel"] = Rule(tf_prefix + "W", "same")
    table[flax_prefix + "bias"] = Rule(tf_prefix + "b", "vector", (1, 1, 1))
    table[flax_prefix + "logs"] = Rule(tf_prefix + "logs", "vector", (1,))

  def actnorm(flax_prefix, tf_prefix):  # tfops.actnorm("actnorm"): two variable scopes.
    table[flax_prefix + "bias"] = Rule(tf_prefix + "actnorm_center/b", "vector", (1, 1, 1))
    table[flax_prefix + "logs"] = Rule(tf_prefix + "actnorm_scale/logs", "vector", (1, 1, 1))

  for level in range(config.levels):
    for step in range(config.depth):
      f, t = f"levels/{level}/steps/{step}/", f"model/{level}/{step}/"
      actnorm(f + "actnorm/", t)
      # TF applies x·W per pixel; the Flax layer applies W·x.
      table[f + "invconv/weight"] = Rule(t + "invconv/W", "transpose")
      for conv, name in (("conv1", "l_1"), ("conv2", "l_2")):
        table[f + f"coupling_net/{conv}/kernel"] = Rule(t + f"f1/{name}/W", "same")
        actnorm(f + f"coupling_net/{conv}/actnorm/", t + f"f1/{name}/")
      zero_conv(f + "coupling_net/conv_out/", t + "f1/l_last/")
    if level < config.levels - 1:
      zero_conv(f"levels/{level}/split_prior/", f"model/pool{level}/conv/")
  if config.learn_top:
    zero_conv("top_prior/", "model/prior/p/")
  return table


# -- the strict conversion ----------------------------------------------------------------


def convert(source: Mapping[str, np.ndarray], config: glow.GlowConfig, table: Table,
            ignored: Mapping[str, tuple[int, ...]] | None = None,
            optional: tuple[str, ...] = (), source_name: str = "the checkpoint"):
  """Builds the Flax state of `config` from `source` through `table` -> (graphdef, state).

  Raises `checkpoint_io.CheckpointError` listing every missing, unexpected and
  mis-shaped tensor. `ignored` are known tensors that carry nothing (checked for shape);
  source keys starting with an `optional` prefix may be present and are dropped.
  """
  graphdef, state = nnx.split(glow.Glow(config))
  flat, treedef = checkpoint_io.flatten(state)
  if set(flat) != set(table):
    raise AssertionError(f"Internal mapping mismatch: {sorted(set(flat) ^ set(table))[:5]}")
  expected = {rule.source_key: rule.source_shape(tuple(flat[k].shape))
              for k, rule in table.items()}
  expected.update(ignored or {})
  found = {k: tuple(v.shape) for k, v in source.items()
           if k in expected or not any(k.startswith(p) for p in optional)}
  checkpoint_io.check_keys(expected, found, source_name)
  leaves = [table[k].apply(source[table[k].source_key], leaf.shape) for k, leaf in flat.items()]
  return graphdef, jax.tree_util.tree_unflatten(treedef, leaves)


def convert_torch(path: str) -> tuple[glow.GlowConfig, object, object]:
  source = read_torch_checkpoint(path)
  config = infer_torch_config(source)
  graphdef, state = convert(source, config, torch_mapping(config),
                            ignored=_torch_ignored_shapes(config), source_name=path)
  return config, graphdef, state


def convert_tf_tensors(tensors: Mapping[str, np.ndarray], image_size: int,
                       learn_top: bool = True, n_bits: int = 8,
                       source_name: str = "the checkpoint"):
  """All tensors of an openai/BASIS checkpoint -> (config, graphdef, state)."""
  source = tf_model_tensors(tensors)
  config = infer_tf_config(source, image_size, learn_top, n_bits)
  optional = () if config.learn_top else ("model/prior/",)
  graphdef, state = convert(source, config, tf_mapping(config), optional=optional,
                            source_name=source_name)
  return config, graphdef, state


def convert_tf(path: str, image_size: int, learn_top: bool = True, n_bits: int = 8,
               read=read_tf_checkpoint):
  """An openai/BASIS TF checkpoint (prefix) -> (config, graphdef, state)."""
  return convert_tf_tensors(read(path), image_size, learn_top, n_bits, source_name=path)


# -- BASIS's per-σ ladder ------------------------------------------------------------------

# BASIS (glow/sep.py) reads finetuned/<dataset>/logs<σ>/model_best_loss.ckpt, σ written
# with 'point' and cut to at most 3 decimals: logs1point0, logs0point599, …, logs0point016,
# logs0point01.
BASIS_CHECKPOINT = "model_best_loss.ckpt"
_BASIS_FOLDER = re.compile(r"logs(\d+)point(\d+)")


@dataclasses.dataclass(frozen=True)
class LadderEntry:
  """One per-σ checkpoint and the σ its BASIS folder name gives (to `decimals` places)."""

  path: str
  label: str
  sigma: float
  decimals: int

  def matches(self, sigma: float) -> bool:
    """σ cut or rounded to the name's decimals, at least 3 (BASIS writes 0.01 as 0point01
    beside 0point016), gives the name's number."""
    scale = 10**max(3, self.decimals)
    named = round(self.sigma * scale)
    return named in (int(np.floor(sigma * scale * (1 + 1e-9))), round(sigma * scale))


def ladder_entry(path: str) -> LadderEntry:
  """The entry of `path` (a checkpoint prefix in a BASIS σ folder)."""
  label = os.path.basename(os.path.dirname(os.path.abspath(path)))
  m = _BASIS_FOLDER.fullmatch(label)
  if not m:
    raise InputFileError(f"{path} is not in a BASIS σ folder (logs<σ with 'point'>/, e.g. "
                         "logs0point016/), so its σ is unknown.")
  return LadderEntry(path, label, float(f"{m.group(1)}.{m.group(2)}"), len(m.group(2)))


def find_basis_ladder(directory: str) -> list[LadderEntry]:
  """The σ folders of a BASIS tree (e.g. finetuned/cifar10), largest σ first."""
  if not os.path.isdir(directory):
    raise MissingFileError(f"No such directory: {directory}")
  entries = []
  for name in sorted(os.listdir(directory)):
    if _BASIS_FOLDER.fullmatch(name) and os.path.isdir(os.path.join(directory, name)):
      path = os.path.join(directory, name, BASIS_CHECKPOINT)
      if not os.path.exists(path + ".index"):
        raise MissingFileError(f"{os.path.join(directory, name)} has no {BASIS_CHECKPOINT}"
                               ".index (the TF checkpoint BASIS reads there).")
      entries.append(ladder_entry(path))
  if not entries:
    raise MissingFileError(f"{directory} has no BASIS σ folders (logs1point0/, "
                           "logs0point599/, …, each with model_best_loss.ckpt).")
  return sorted(entries, key=lambda e: -e.sigma)


def match_ladder(entries: Sequence[LadderEntry], sigmas: Sequence[float],
                 ordered: bool = False) -> list[LadderEntry]:
  """`entries` in the order of the ladder `sigmas` (largest first), one per σ.

  Refuses, in one error, every σ of the ladder without a checkpoint, every checkpoint
  matching no σ (or several) and, if `ordered`, the first one out of the ladder's order.
  """
  def fmt(sigma):
    return f"{sigma:.6g}"

  problems, chosen = [], []
  for sigma in sigmas:
    found = [e for e in entries if e.matches(sigma)]
    if len(found) != 1:
      problems.append(f"σ = {fmt(sigma)} has " +
                      ("no checkpoint" if not found else
                       "several: " + ", ".join(e.label for e in found)))
    chosen.extend(found[:1])
  problems.extend(f"{label} serves several σ"
                  for label in sorted({e.label for e in chosen if chosen.count(e) > 1}))
  extra = [e for e in entries if not any(e.matches(s) for s in sigmas)]
  if extra:
    problems.append("not on the ladder: " + ", ".join(
        f"{e.label} (σ = {fmt(e.sigma)})" for e in extra))
  if not problems and ordered and list(entries) != chosen:
    first = next(i for i, (e, c) in enumerate(zip(entries, chosen)) if e != c)
    problems.append(f"mis-ordered: checkpoint {first + 1} is {entries[first].label}, but "
                    f"level {first + 1} of the ladder is σ = {fmt(sigmas[first])} (largest σ "
                    "first)")
  if problems:
    raise InputFileError(
        f"The checkpoints do not fit the σ ladder {', '.join(map(fmt, sigmas))}: "
        + "; ".join(problems) + ".",
        hint="Set the ladder with --sigma_max, --sigma_min, --num_levels (the separation "
        "config's schedule), or add/remove the σ folders.")
  return chosen


def convert_tf_ladder(entries: Sequence[LadderEntry], sigmas: Sequence[float], image_size: int,
                      learn_top: bool = True, n_bits: int = 8, ordered: bool = False,
                      read=read_tf_checkpoint):
  """Per-σ checkpoints -> (config, graphdef, stacked state): level 0 = largest σ, the
  layout `glow.load` reads (`glow.save_weights(..., sigmas=sigmas)`)."""
  entries = match_ladder(entries, sigmas, ordered)
  config, states = None, []
  for entry in entries:
    entry_config, graphdef, state = convert_tf(entry.path, image_size, learn_top, n_bits, read)
    if config is not None and entry_config != config:
      raise InputFileError(f"{entry.path} holds another architecture ({entry_config}) than "
                           f"{entries[0].path} ({config}).")
    config = entry_config
    states.append(state)
  return config, graphdef, glow.stack_states(states)


def save(path: str, config: glow.GlowConfig, state, source: str, sigmas=None) -> None:
  glow.save_weights(path, config, state, sigmas=sigmas, source=source)


# -- CLI ------------------------------------------------------------------------------------

_SOURCES = ("checkpoint", "tf_checkpoint", "tf_ladder", "tf_checkpoints")


def define_flags(flag_values=flags.FLAGS) -> None:
  """CLI flags, defined only when run as a program (tests import several converters)."""
  def string(name, help_):
    flags.DEFINE_string(name, None, help_, flag_values=flag_values)

  string("checkpoint", "y0ast/Glow-PyTorch state dict (.pth).")
  string("tf_checkpoint", "openai/BASIS TF checkpoint prefix (e.g. model_best_loss.ckpt).")
  string("tf_ladder", "A BASIS tree of per-σ folders (logs1point0/, …, logs0point01/), each "
         "with model_best_loss.ckpt: written as one stacked σ file.")
  flags.DEFINE_list("tf_checkpoints", None, "Per-σ TF checkpoints in BASIS σ folders, largest "
                    "σ first: written as one stacked σ file.", flag_values=flag_values)
  string("out", "Output .npz.")
  flags.DEFINE_integer("image_size", 32, "TF: image height and width (not in the checkpoint).",
                       flag_values=flag_values)
  flags.DEFINE_integer("n_bits", 8, "TF: openai's --n_bits_x.", flag_values=flag_values)
  flags.DEFINE_bool("learn_top", True, "TF: keep the learned top prior if the checkpoint has "
                    "one (BASIS's separation restores without it: --nolearn_top).",
                    flag_values=flag_values)
  for name, default, help_ in (("sigma_max", 1.0, "Largest σ"), ("sigma_min", 0.01, "Smallest σ")):
    flags.DEFINE_float(name, default, f"Ladder: {help_} (BASIS's and configs/*_glow.py's).",
                       flag_values=flag_values)
  flags.DEFINE_integer("num_levels", 10, "Ladder: number of σ, geometric (BASIS: 10).",
                       flag_values=flag_values)


def main(argv):
  del argv
  args = flags.FLAGS
  given = [name for name in _SOURCES if args[name].value]
  if not args.out or len(given) != 1:
    raise app.UsageError("Give --out and exactly one of " +
                         ", ".join(f"--{name}" for name in _SOURCES) + ".")
  sigmas = None
  if args.checkpoint:
    config, _, state = convert_torch(args.checkpoint)
    source = f"y0ast/Glow-PyTorch: {args.checkpoint}"
  elif args.tf_checkpoint:
    config, _, state = convert_tf(args.tf_checkpoint, args.image_size, args.learn_top,
                                  args.n_bits)
    source = f"openai/glow TF: {args.tf_checkpoint}"
  else:
    sigmas = schedules.geometric_sigmas(args.sigma_max, args.sigma_min, args.num_levels)
    if args.tf_ladder:
      entries, ordered = find_basis_ladder(args.tf_ladder), False
    else:
      entries, ordered = [ladder_entry(p) for p in args.tf_checkpoints], True
    config, _, state = convert_tf_ladder(entries, sigmas, args.image_size, args.learn_top,
                                         args.n_bits, ordered)
    source = f"BASIS TF ladder: {args.tf_ladder or ','.join(args.tf_checkpoints)}"
  save(args.out, config, state, source, sigmas)
  print(f"Wrote {args.out}: {config}" +
        (", σ = " + ", ".join(f"{s:.6g}" for s in sigmas) if sigmas else ""))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
