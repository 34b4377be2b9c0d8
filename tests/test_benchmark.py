"""The benchmark's FLOP count, its PyTorch baseline's fidelity, and a CPU smoke run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from basis_jax.priors import ncsn
from benchmarks import measure, ncsn_sampler, report
from configs import benchmark_ncsn

# float32 on both sides; oneDNN's choice of convolution algorithm varies between runs, which
# moves the relative L2 difference around 1e-5 (observed 1.2e-6 .. 1.2e-5).
PARITY = 3e-5


def _conv_mean_pool_saving(size, cin, cout):
  """Multiply-adds ×2 that res2.0's ConvMeanPools skip at input size `size`: its 3×3 conv
  as a stride-2 4×4 one (16 taps at (size/2)² positions instead of 9 at size²) and its
  1×1 shortcut taken after the pool."""
  half = (size // 2) ** 2
  return 2 * cin * cout * ((9 * size**2 - 16 * half) + (size**2 - half))


@pytest.mark.parametrize("arch,gflop", [(ncsn.NCSNConfig.mnist(), 3.79),
                                        (ncsn.NCSNConfig.cifar10(), 19.79)])
def test_flop_count_matches_the_reference_figures(arch, gflop):
  """The published figures (BASIS reference notes): 3.79 (MNIST) and 19.79 (CIFAR-10) GFLOP
  per forward, less what the merged ConvMeanPool skips (exactly counted here)."""
  graphdef, params = nnx.split(nnx.eval_shape(lambda: ncsn.build(arch)), nnx.Param)
  score = ncsn.make_score_fn(graphdef)
  shape = (1, arch.image_size, arch.image_size, arch.channels)
  flops = measure.matmul_flops(lambda p, x: score(p, x, jnp.int32(0)), params,
                                    jnp.zeros(shape))
  saving = _conv_mean_pool_saving(arch.image_size, arch.ngf, 2 * arch.ngf)
  assert (flops + saving) / 1e9 == pytest.approx(gflop, abs=0.005)
  assert saving / 1e9 == pytest.approx(0.0739 if arch.channels == 1 else 0.3859, abs=1e-4)


def _tiny_network(channels=1, size=28):
  arch = ncsn.NCSNConfig(channels=channels, image_size=size, ngf=4)
  graphdef, params = nnx.split(ncsn.build(arch, 3), nnx.Param)
  return arch, ncsn.make_score_fn(graphdef), params


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_torch_model_holds_the_jax_weights(channels, size):
  """from_jax runs the converter's mapping backwards: the same score at every level."""
  pytest.importorskip("torch")
  from tests.reference import torch_ncsn  # pylint: disable=import-outside-toplevel
  arch, score_fn, params = _tiny_network(channels, size)
  model = torch_ncsn.from_jax(params, channels, arch.ngf)
  x = np.asarray(jax.random.uniform(jax.random.key(0), (2, size, size, channels)))
  with jax.default_matmul_precision("highest"):
    for level in (0, 5, 9):
      expected = np.asarray(jax.jit(score_fn)(params, x, jnp.int32(level)))
      got = torch_ncsn.score(model, x, level)
      assert measure.relative_error(got, expected) < PARITY, level


def test_torch_variants_take_the_same_step():
  """The released loop's autograd data term (weight 2 on ‖Σx − m‖² without ½) equals the
  fused step's written-out term, and both equal the formula of sampler.py."""
  torch = pytest.importorskip("torch")
  # pylint: disable=import-outside-toplevel
  from benchmarks import torch_loop
  from tests.reference import torch_ncsn
  arch, score_fn, params = _tiny_network()
  model = torch_ncsn.from_jax(params, 1, arch.ngf)
  rng = np.random.default_rng(0)
  mixtures = torch.from_numpy(rng.uniform(0, 2, (3, 1, 28, 28)).astype(np.float32))
  start = [torch.from_numpy(rng.uniform(size=(3, 1, 28, 28)).astype(np.float32))
           for _ in range(2)]
  labels = torch.full((3,), 4, dtype=torch.long)
  step = dict(step_size=1e-3, inv_gamma2=7.0, weight=2.0)
  outputs = {}
  for name, fn in torch_loop.VARIANTS.items():
    torch.manual_seed(11)  # Both draw the components' noise in the same order.
    xs = [x.clone().requires_grad_(name == "released_loop") for x in start]
    outputs[name] = [x.detach().numpy() for x in fn(model, xs, mixtures, labels, **step)]
  torch.manual_seed(11)
  noise = [torch.randn(3, 1, 28, 28).numpy() * np.sqrt(2e-3) for _ in range(2)]
  residual = mixtures.numpy() - sum(x.numpy() for x in start)
  for j, x in enumerate(start):
    nhwc = x.numpy().transpose(0, 2, 3, 1)
    score = np.asarray(score_fn(params, nhwc, jnp.int32(4))).transpose(0, 3, 1, 2)
    expected = x.numpy() + 1e-3 * (score + 2.0 * 7.0 * residual) + noise[j]
    for name in torch_loop.VARIANTS:
      np.testing.assert_allclose(outputs[name][j], expected, atol=1e-5, err_msg=name)


def test_ratios_are_the_torch_time_over_the_row_time():
  torch_rows = [{"variant": "released_loop", "ms_per_step": 300.0},
                {"variant": "fused_no_grad", "ms_per_step": 200.0}]
  rows = [{"ms_per_step": 100.0}, {"note": "out of memory"}]
  ncsn_sampler.add_ratios(rows, torch_rows)
  assert rows[0]["x_torch_released_loop"] == 3.0 and rows[0]["x_torch_fused_no_grad"] == 2.0
  assert "x_torch_released_loop" not in rows[1]


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
  config.torch_steps = 2
  config.conv_probe = False
  completes = []
  results = ncsn_sampler.run(config, on_row=lambda r: completes.append(r["complete"]))
  # After the sweep, precision and baseline rows, the score errors, PyTorch's two rows (when
  # importable), then once complete.
  assert completes[-1] and not any(completes[:-1])
  assert len(completes) == 5 + (2 if results["pytorch"] else 0)
  row = results["sweep"][0]
  assert row["batch"] % row["devices"] == 0 and row["batch"] >= 3  # Padded to the mesh.
  assert row["seconds"] > 0 and row["ms_per_step"] == pytest.approx(row["seconds"] * 100)
  assert row["seconds_full_schedule"] == pytest.approx(row["ms_per_step"])  # 1000 steps.
  assert results["baseline"]["steps_timed"] == 3 and results["baseline"]["extrapolated"]
  assert results["precisions"][0]["score_rel_error"] == 0.0
  text = report.markdown(results)
  assert "Reference-structure loop" in text and "| highest | " in text
  if results["pytorch"] is None:
    assert ncsn_sampler._import_torch() is None  # pylint: disable=protected-access
    return
  pytorch = results["pytorch"]
  assert [r["variant"] for r in pytorch["rows"]] == ["released_loop", "fused_no_grad"]
  assert all(r["steps_timed"] == 2 and r["batch"] == row["batch"] for r in pytorch["rows"])
  assert pytorch["score_rel_error_vs_jax"] < PARITY
  loop_ms = pytorch["rows"][0]["ms_per_step"]
  assert row["x_torch_released_loop"] == pytest.approx(loop_ms / row["ms_per_step"])
  # PyTorch's rate counts what its model executes (FlopCounterMode): the JAX program's
  # FLOPs plus what the merged ConvMeanPool skips, less the resize matmuls that only the
  # JAX count includes (0.9 % at ngf=4, 0.06 % at full size).
  torch_gflop_per_image = pytorch["rows"][0]["gflops"] * (loop_ms / 1e3) / (row["batch"] * 2)
  assert torch_gflop_per_image == pytest.approx(
      row["gflop_per_image"] + _conv_mean_pool_saving(28, 4, 8) / 1e9, rel=0.01)
  assert "PyTorch" in text and "× torch loop" in text


def test_hardware_probes_and_fractions():
  """The kernel probes measure what their rows say (FLOPs / time), on every device, and a
  step's fraction of the conv probe is its own rate over the probe's."""
  config = benchmark_ncsn.get_config("mnist")
  config.batch_sizes = (3,)
  arch = ncsn.NCSNConfig.mnist(ngf=4)
  probes = measure.hardware_probes(config, arch, repeats=1, matmul_size=64)
  devices = jax.local_device_count()
  batch = -(-3 * 2 // devices) * devices  # N·k images, padded to the mesh.
  jax_rows = [r for r in probes if r["framework"].startswith("jax")]
  assert [(r["kernel"], r["dtype"]) for r in jax_rows] == [
      ("3×3 conv", "float32"), ("matmul", "float32"), ("3×3 conv", "bfloat16"),
      ("matmul", "bfloat16")]
  conv_flops = 2 * batch * 14 * 14 * 9 * 8 * 8
  for row in probes:
    flops = conv_flops if row["kernel"] == "3×3 conv" else None
    if row["kernel"] == "matmul":
      flops = 2 * 64**3 * (devices if row["framework"].startswith("jax") else 1)
    assert row["gflops"] * row["ms"] * 1e6 == pytest.approx(flops, rel=1e-9)
  assert all(r["workers"] == f"{devices} devices" for r in jax_rows)
  rate = measure.probe_rate(probes, "jax", "3×3 conv", "float32")
  assert rate == jax_rows[0]["gflops"]
  assert measure.probe_rate(probes, "jax", "3×3 conv", "int8") is None
  rows = [{"precision": "default", "tflops": 0.05}, {"precision": "bf16", "tflops": 0.05},
          {"batch": 3, "note": "out of memory"}]
  ncsn_sampler.add_probe_fractions(rows, probes)
  assert rows[0]["frac_conv_probe"] == pytest.approx(50.0 / rate)
  assert rows[1]["frac_conv_probe"] == pytest.approx(50.0 / jax_rows[2]["gflops"])
  assert "frac_conv_probe" not in rows[2]
  text = report.markdown({"info": {"model": "mnist", "num_devices": devices,
                                         "device": "cpu", "jax": jax.__version__,
                                         "num_levels": 10, "steps_per_level": 1,
                                         "num_components": 2, "cpu_count": 2,
                                         "load_average": None, "xla_flags": "",
                                         "report_steps": 1000},
                                "sweep": [], "precisions": [], "ablations": [],
                                "baseline": None, "pytorch": None, "probes": probes})
  assert "Kernel probes" in text and "| matmul |" in text


def test_rows_print_as_one_table_line_with_fixed_decimals():
  row = {"precision": "bf16", "batch": 50, "devices": 2, "compile_s": 12.345678901234567,
         "seconds": 0.5321234567890123, "ms_per_step": 5.321234567890123,
         "mixtures_per_s": 93.96500123456789, "tflops": 0.07101234567890123,
         "peak_memory_gib": None, "score_rel_error": 0.0012345678901234567}
  assert report.format_row("sweep", row) == (
      "sweep      bf16, 50 mixtures            | compile 12.3 s | 0.532 s/batch | "
      "5.32 ms/step | 93.965 mixtures/s | 0.0710 TFLOP/s | score rel. err. 1.2e-03")
  torch_row = {"variant": "released_loop", "batch": 2, "steps_timed": 3,
               "ms_per_step": 41.987654321, "gflops": 8.123456789}
  assert report.format_row("pytorch", torch_row) == (
      "pytorch    released_loop, 2 mixtures    | 3 steps timed | 41.99 ms/step | "
      "8.12 GFLOP/s")


def test_a_stopped_run_keeps_the_rows_it_measured(tmp_path, monkeypatch):
  """Each row is on disk (benchmark.json and .md, marked incomplete) before the next one is
  measured, so a run stopped during the second measurement keeps the first."""
  config = benchmark_ncsn.get_config("smoke")
  time_sampler = ncsn_sampler._time_sampler  # pylint: disable=protected-access
  calls = []

  def first_then_stop(*args, **kwargs):
    calls.append(kwargs["label"])
    if len(calls) == 2:
      raise KeyboardInterrupt  # As Ctrl-C (or a kill) during the second measurement.
    return time_sampler(*args, **kwargs)

  monkeypatch.setattr(ncsn_sampler, "_time_sampler", first_then_stop)
  with pytest.raises(KeyboardInterrupt):
    ncsn_sampler.run(config, on_row=lambda results: report.save(results, tmp_path))
  assert calls == ["sweep", "precision"]
  saved = json.loads((tmp_path / "benchmark.json").read_text())
  assert not saved["complete"] and saved["precisions"] == []
  [row] = saved["sweep"]
  assert row["batch"] >= 2 and row["ms_per_step"] > 0
  text = (tmp_path / "benchmark.md").read_text()
  assert "**Incomplete**" in text and f"| {row['precision']} | {row['batch']} | " in text
