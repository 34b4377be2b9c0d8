"""Converts Glow weights to a basis-jax weights file.

Two sources:

* PyTorch: the state dict of y0ast/Glow-PyTorch (github.com/y0ast/Glow-PyTorch, layout as
  of commit 13c7b013dde32600e732416f2ed15438d686636f), a widely used port of openai/glow:

      python -m convert_weights.glow --checkpoint=glow_model_250.pth --out=glow.npz

  The architecture (image size, levels, depth, width, coupling, LU, learned top prior) is
  read off the tensor shapes. That port pads its 3×3 convolutions with zeros (no openai
  edge channel) and stores actnorm log-scales without openai's ×3 factor; the converted
  model uses `edge_padding=False` and the log-scales are divided by 3 on the way in.
  Class-conditional models (`y_condition`) and the 'shuffle'/'reverse' permutations are
  not supported and are refused by name.

* TensorFlow: an openai/glow or BASIS checkpoint (`--tf_checkpoint=path/model.ckpt`,
  with `--image_size`, `--channels`), read through `tf.train.load_checkpoint` when
  TensorFlow is installed. Only the raw `model/...` tensors are used (not EMA copies or
  optimizer slots); `--no_learn_top` drops the learned top prior, as BASIS's separation
  script restores without it.

The mapping is strict: every source tensor is consumed and every Flax parameter assigned
with the right shape, or the error lists the missing, unexpected and mis-shaped tensors.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping

import jax
import numpy as np
from absl import app, flags
from flax import nnx

from basis_jax import checkpoint_io, cli
from basis_jax.errors import ConfigError, InputFileError, MissingDependencyError
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


def read_tf_checkpoint(path: str) -> dict[str, np.ndarray]:
  """The raw `model/...` variables of a TF checkpoint (no EMA copies, no optimizer slots)."""
  try:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise MissingDependencyError(
        "Reading an openai/BASIS TensorFlow Glow checkpoint needs TensorFlow, which is not "
        "installed (pip install tensorflow). Convert on a machine that has it; the converted "
        ".npz loads without TensorFlow.") from e
  try:
    reader = tf.train.load_checkpoint(path)
    names = reader.get_variable_to_shape_map()
    return {name: np.asarray(reader.get_tensor(name), np.float32) for name in names
            if name.startswith("model/") and _is_raw_tf_variable(name)}
  except (tf.errors.OpError, ValueError) as e:
    raise InputFileError(f"Cannot read the TensorFlow checkpoint {path}: {e}") from e


def _is_raw_tf_variable(name: str) -> bool:
  leaf = name.rsplit("/", 1)[-1]
  return leaf in ("W", "b", "logs", "P", "L", "U", "sign_S", "log_S")


def tf_mapping(config: glow.GlowConfig) -> Table:
  """Every Flax parameter and the openai/glow TF variable it comes from (NHWC already)."""
  if config.lu_decomposed:
    raise ConfigError("The LU-decomposed 1×1 convolution of openai/glow is disabled in its "
                      "code; only plain `invconv/W` TF checkpoints are supported.")
  if not config.edge_padding:
    raise ConfigError("openai/glow TF checkpoints use edge padding; set edge_padding=True.")
  table: Table = {}

  def zero_conv(flax_prefix, tf_prefix):
    table[flax_prefix + "kernel"] = Rule(tf_prefix + "W", "same")
    table[flax_prefix + "bias"] = Rule(tf_prefix + "b", "vector", (1, 1, 1))
    table[flax_prefix + "logs"] = Rule(tf_prefix + "logs", "vector", (1,))

  def actnorm(flax_prefix, tf_prefix):
    table[flax_prefix + "bias"] = Rule(tf_prefix + "actnorm_center/b", "vector", (1, 1, 1))
    table[flax_prefix + "logs"] = Rule(tf_prefix + "actnorm_scale/logs", "vector", (1, 1, 1))

  for level in range(config.levels):
    for step in range(config.depth):
      f, t = f"levels/{level}/steps/{step}/", f"model/{level}/{step}/"
      actnorm(f + "actnorm/", t + "actnorm_")
      # TF applies x·W per pixel; the Flax layer applies W·x.
      table[f + "invconv/weight"] = Rule(t + "invconv/W", "transpose")
      for conv, name in (("conv1", "l_1"), ("conv2", "l_2")):
        table[f + f"coupling_net/{conv}/kernel"] = Rule(t + f"f1/{name}/W", "same")
        actnorm(f + f"coupling_net/{conv}/actnorm/", t + f"f1/{name}/actnorm_")
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


def convert_tf(path: str, config: glow.GlowConfig):
  source = read_tf_checkpoint(path)
  optional = () if config.learn_top else ("model/prior/",)
  graphdef, state = convert(source, config, tf_mapping(config), optional=optional,
                            source_name=path)
  return graphdef, state


def save(path: str, config: glow.GlowConfig, state, source: str) -> None:
  glow.save_weights(path, config, state, source=source)


# -- CLI ------------------------------------------------------------------------------------

def _define_flags() -> None:
  """CLI flags, defined only when run as a program (tests import several converters)."""
  flags.DEFINE_string("checkpoint", None, "y0ast/Glow-PyTorch state dict (.pth).")
  flags.DEFINE_string("tf_checkpoint", None, "openai/BASIS TF checkpoint prefix.")
  flags.DEFINE_string("out", None, "Output .npz.")
  flags.DEFINE_integer("image_size", 32, "TF only: image height and width.")
  flags.DEFINE_integer("channels", 3, "TF only: image channels.")
  flags.DEFINE_integer("levels", 3, "TF only: number of levels.")
  flags.DEFINE_integer("depth", 32, "TF only: flow steps per level.")
  flags.DEFINE_integer("width", 512, "TF only: coupling network width.")
  flags.DEFINE_enum("coupling", "affine", ["affine", "additive"], "TF only.")
  flags.DEFINE_bool("learn_top", True, "TF only: keep the learned top prior.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  args = flags.FLAGS
  if not args.out or bool(args.checkpoint) == bool(args.tf_checkpoint):
    raise app.UsageError("Give --out and exactly one of --checkpoint, --tf_checkpoint.")
  if args.checkpoint:
    config, _, state = convert_torch(args.checkpoint)
    save(args.out, config, state, f"y0ast/Glow-PyTorch: {args.checkpoint}")
  else:
    config = glow.GlowConfig(image_shape=(args.image_size, args.image_size, args.channels),
                             levels=args.levels, depth=args.depth, width=args.width,
                             coupling=args.coupling, learn_top=args.learn_top)
    _, state = convert_tf(args.tf_checkpoint, config)
    save(args.out, config, state, f"openai/glow TF: {args.tf_checkpoint}")
  print(f"Wrote {args.out}: {config}")


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
