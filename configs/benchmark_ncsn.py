"""Benchmark of the compiled BASIS sampler with the NCSN prior (random weights).

  python -m experiments.benchmark --config=configs/benchmark_ncsn.py:mnist --workdir=/tmp/bench
  python -m experiments.benchmark --config=configs/benchmark_ncsn.py:cifar10 --workdir=/tmp/bench

CPU smoke run (a width-8 MNIST network, 2 levels × 2 steps, one batch size, one precision,
no baselines, ablations or probes; checks the plumbing, measures nothing worth quoting):

  python -m experiments.benchmark --config=configs/benchmark_ncsn.py:smoke --workdir=/tmp/b

Each run logs its phases and each measured row as one line, and rewrites
WORKDIR/benchmark.{json,md} after every row (a stopped run keeps its rows).
"""

import ml_collections


def get_config(model="mnist"):
  if model not in ("mnist", "cifar10", "smoke"):
    raise ValueError(f"Unknown benchmark model {model!r}; use :mnist, :cifar10 or :smoke.")
  config = ml_collections.ConfigDict()
  config.model = "mnist" if model == "smoke" else model
  config.ngf = 0  # 0: the published width (64 MNIST, 128 CIFAR-10).
  config.num_components = 2
  config.num_levels = 10
  config.steps_per_level = 100
  config.step_lr = 3e-5
  config.seed = 0
  # The batch sweep (mixtures per batch, global); stops at the first that does not fit.
  config.batch_sizes = (50, 250, 1000)
  config.sweep_precision = "bf16"
  # Every precision is also timed at the first batch size, with its score error.
  config.precisions = ("highest", "default", "bf16")
  config.repeats = 2
  # Reference-structure baseline at the first batch size; 0 steps = the whole schedule.
  config.baseline = True
  config.baseline_steps = 0
  # Ablations at the first batch size (sweep precision): scan unroll, one network call per
  # component instead of one fused call, donation of the mixture buffer.
  config.ablations = ("unroll2", "per_component_calls")
  # PyTorch baseline (when torch is importable) at the precision rows' batch, on the same
  # weights: the released loop and the fused no-grad variant, `torch_steps` steps of one
  # level each (after one warm-up step), per step.
  config.torch_baseline = True
  config.torch_steps = 3
  config.threads = 0  # PyTorch intra-op threads; 0 keeps its default (the physical cores).
  # Every s / L×T column extrapolates the measured time per step to this many steps.
  config.report_steps = 1000
  # Kernel probes, JAX and PyTorch: one 3×3 conv at the network's widest shape and a 2048²
  # matmul per device; every row then reports its fraction of its framework's conv probe.
  config.conv_probe = True
  if model == "smoke":
    config.update(ngf=8, num_levels=2, steps_per_level=2, batch_sizes=(2,),
                  precisions=("default",), repeats=1, baseline=False, ablations=(),
                  torch_baseline=False, conv_probe=False)
  return config
