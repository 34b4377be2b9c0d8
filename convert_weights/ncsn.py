"""Converts a published NCSN `checkpoint.pth` (PyTorch) to a basis-jax weights file.

    python -m convert_weights.ncsn --checkpoint=run/logs/mnist/checkpoint.pth \
        --dataset=mnist --out=weights/ncsn_mnist.npz

The input is what the NCSN code saves, `[state_dict, optimizer_state]` with DataParallel's
`module.` key prefix, or a bare state dict. The architecture (channels, ngf, number of noise
levels) is read off the tensor shapes; `--dataset` only fixes the image size (28 for MNIST,
32 otherwise). The mapping is strict: every source tensor must be consumed and every Flax
parameter assigned with the right shape, otherwise the error lists the missing, unexpected
and mis-shaped keys. The output loads without torch (see `basis_jax.files.checkpoint_io`).
"""

from __future__ import annotations

import os
from typing import Mapping

import jax
import numpy as np
from absl import flags

from basis_jax.files import checkpoint_io

from basis_jax import cli

from basis_jax.sampling import schedules
from basis_jax.errors import ConfigError, InputFileError
from basis_jax.priors import ncsn
from convert_weights import torch_io

_IMAGE_SIZES = {"mnist": 28, "cifar10": 32, "celeba": 32}


def _ncsn_state_dict(obj):
  if isinstance(obj, (list, tuple)) and obj and isinstance(obj[0], Mapping):
    return obj[0]  # [state_dict, optimizer_state] as the NCSN runner saves.
  return obj


def read_torch_checkpoint(path: str) -> dict[str, np.ndarray]:
  """The state dict of `path` (a bare one, or [state_dict, optimizer_state])."""
  return torch_io.read_state_dict(path, _ncsn_state_dict)


def flax_key(torch_key: str) -> str:
  """'res2.0.conv2.conv.weight' -> 'res2/0/conv2/conv/kernel' (the module trees mirror)."""
  *parents, leaf = torch_key.split(".")
  if leaf == "weight":
    leaf = "embedding" if parents and parents[-1] == "embed" else "kernel"
  return "/".join(parents + [leaf])


def torch_key(flax_path: str) -> str:
  """The inverse of `flax_key`."""
  *parents, leaf = flax_path.split("/")
  return ".".join(parents + ["weight" if leaf in ("kernel", "embedding") else leaf])


def _torch_shape(flax_shape: tuple[int, ...]) -> tuple[int, ...]:
  if len(flax_shape) == 4:  # HWIO -> OIHW
    h, w, i, o = flax_shape
    return (o, i, h, w)
  return tuple(flax_shape)


def infer_config(state: Mapping[str, np.ndarray], dataset: str) -> ncsn.NCSNConfig:
  if dataset not in _IMAGE_SIZES:
    raise ConfigError(f"Unknown dataset {dataset!r}; known: {sorted(_IMAGE_SIZES)}.")
  for key in ("begin_conv.weight", "normalizer.embed.weight"):
    if key not in state:
      raise InputFileError(f"The checkpoint has no {key!r}; is it an NCSN CondRefineNetDilated "
                           f"state dict? First keys: {sorted(state)[:5]}")
  ngf, channels = state["begin_conv.weight"].shape[:2]
  num_classes = state["normalizer.embed.weight"].shape[0]
  return ncsn.NCSNConfig(channels=int(channels), image_size=_IMAGE_SIZES[dataset],
                         ngf=int(ngf), num_classes=int(num_classes))


def convert_state_dict(state: Mapping[str, np.ndarray], config: ncsn.NCSNConfig,
                       source: str = "checkpoint"):
  """Maps a (prefix-free) state dict onto the Flax parameters; returns an nnx.State.

  The check runs in the PyTorch naming and layout, so an error names keys and shapes as
  they appear in the source file.
  """
  _, abstract = ncsn.abstract_params(config)
  flat, treedef = checkpoint_io.flatten(abstract)
  expected = {torch_key(k): _torch_shape(v.shape) for k, v in flat.items()}
  checkpoint_io.check_keys(expected, {k: tuple(v.shape) for k, v in state.items()}, source)
  leaves = []
  for path in flat:
    value = np.asarray(state[torch_key(path)], np.float32)
    # PyTorch conv weights are OIHW; Flax kernels are HWIO.
    leaves.append(jax.numpy.asarray(value.transpose(2, 3, 1, 0) if value.ndim == 4 else value))
  return jax.tree_util.tree_unflatten(treedef, leaves)


# The published NCSN runs (MNIST, CIFAR-10) train on σ = geometric(1, 0.01, 10 levels).
PUBLISHED_SIGMA_MAX, PUBLISHED_SIGMA_MIN = 1.0, 0.01


def convert(checkpoint: str, out: str, dataset: str = "mnist",
            sigma_max: float = PUBLISHED_SIGMA_MAX,
            sigma_min: float = PUBLISHED_SIGMA_MIN) -> ncsn.NCSNConfig:
  """Reads `checkpoint`, converts it and writes the project weights file `out`.

  The file records the σ ladder the network was trained for (the published one by
  default), so `ncsn.load` can refuse a schedule with other σ.
  """
  state = read_torch_checkpoint(checkpoint)
  config = infer_config(state, dataset)
  params = convert_state_dict(state, config, source=checkpoint)
  sigmas = schedules.geometric_sigmas(sigma_max, sigma_min, config.num_classes)
  checkpoint_io.save_params(out, params, {
      "architecture": ncsn.ARCHITECTURE, "config": config.to_dict(),
      "source": os.path.basename(checkpoint), "converted_from": "pytorch",
      "sigmas": list(sigmas)})
  return config


def define_flags(flag_values=flags.FLAGS) -> None:
  """CLI flags, defined only when run as a program (tests import several converters)."""
  flags.DEFINE_string("checkpoint", None, "Published checkpoint.pth.", required=True,
                      flag_values=flag_values)
  flags.DEFINE_string("out", None, "Output weights file (.npz).", required=True,
                      flag_values=flag_values)
  flags.DEFINE_enum("dataset", "mnist", sorted(_IMAGE_SIZES),
                    "Dataset the model was trained on (sets the image size).",
                    flag_values=flag_values)
  flags.DEFINE_float("sigma_max", PUBLISHED_SIGMA_MAX, "Largest training σ (published: 1).",
                     flag_values=flag_values)
  flags.DEFINE_float("sigma_min", PUBLISHED_SIGMA_MIN, "Smallest training σ (published: 0.01).",
                     flag_values=flag_values)


def main(argv):
  del argv
  args = flags.FLAGS
  config = convert(args.checkpoint, args.out, args.dataset, args.sigma_max, args.sigma_min)
  print(f"Wrote {args.out}: {config}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
