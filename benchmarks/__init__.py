"""Measuring tools, not the library: FLOP counts, timings, kernel probes and the NCSN
sampler benchmark that experiments/benchmark.py runs (results in BENCHMARKS.md).

basis_jax never imports this package; it may import basis_jax and, for its PyTorch
baseline, the tests' reference port (tests/reference/torch_ncsn.py).
"""
