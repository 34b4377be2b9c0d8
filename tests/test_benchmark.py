"""The benchmark's FLOP count and a CPU smoke run of the whole benchmark."""

import jax.numpy as jnp
import pytest
from flax import nnx

from basis_jax import benchmarking, ncsn_benchmark
from basis_jax.priors import ncsn
from configs import benchmark_ncsn


@pytest.mark.parametrize("arch,gflop", [(ncsn.NCSNConfig.mnist(), 3.79),
                                        (ncsn.NCSNConfig.cifar10(), 19.79)])
def test_flop_count_matches_the_reference_figures(arch, gflop):
  """REFERENCE.md: 3.79 (MNIST) and 19.79 (CIFAR-10) GFLOP per image forward."""
  graphdef, params = nnx.split(nnx.eval_shape(lambda: ncsn.build(arch)), nnx.Param)
  score = ncsn.make_score_fn(graphdef)
  shape = (1, arch.image_size, arch.image_size, arch.channels)
  flops = benchmarking.matmul_flops(lambda p, x: score(p, x, jnp.int32(0)), params,
                                    jnp.zeros(shape))
  assert flops / 1e9 == pytest.approx(gflop, abs=0.005)


def test_benchmark_runs_and_reports_on_cpu():
  config = benchmark_ncsn.get_config("mnist")
  config.ngf = 4
  config.steps_per_level = 1
  config.batch_sizes = (3,)
  config.precisions = ("highest",)
  config.sweep_precision = "highest"
  config.ablations = ()
  config.repeats = 1
  config.baseline_steps = 3
  results = ncsn_benchmark.run(config)
  row = results["sweep"][0]
  assert row["batch"] % row["devices"] == 0 and row["batch"] >= 3  # Padded to the mesh.
  assert row["seconds"] > 0 and row["ms_per_step"] == pytest.approx(row["seconds"] * 100)
  assert results["baseline"]["steps_timed"] == 3 and results["baseline"]["extrapolated"]
  assert results["precisions"][0]["score_rel_error"] == 0.0
  text = ncsn_benchmark.report(results)
  assert "Reference-structure loop" in text and "| highest | " in text
