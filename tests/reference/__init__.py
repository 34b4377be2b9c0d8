"""PyTorch ports of the published networks (NCSN, Glow), written for the parity tests.

They import torch, which the library never does; the benchmark's PyTorch baseline runs the
NCSN port too (benchmarks/torch_loop.py).
"""
