"""The benchmark's PyTorch sampler steps: the released runner's loop and the best plain
PyTorch variant, timed per step on a `tests/reference/torch_ncsn.py` model."""

from __future__ import annotations

import time

import numpy as np
import torch


def _released_step(model, xs, mixtures, labels, step_size, inv_gamma2, weight):
  """One step structured as the released MNIST runner: the network is called once per
  component with autograd recording (its output detached), and the data term is the
  autograd gradient of ‖Σx − m‖² (weight 2 in this project's terms, README Configs)."""
  noises = [torch.randn_like(x) * np.sqrt(2.0 * step_size) for x in xs]
  scores = [model(x, labels).detach() for x in xs]
  loss = torch.sum((sum(xs) - mixtures)**2) * (weight / 2.0)
  grads = torch.autograd.grad(loss, xs)
  return [x + step_size * s - step_size * inv_gamma2 * g.detach() + n
          for x, s, g, n in zip(xs, scores, grads, noises)]


def _fused_step(model, xs, mixtures, labels, step_size, inv_gamma2, weight):
  """The best plain PyTorch variant: all components in one no-grad forward, the data term
  written out (it is linear)."""
  with torch.no_grad():
    k = len(xs)
    scores = model(torch.cat(xs), labels.repeat(k)).chunk(k)
    residual = mixtures - sum(xs)
    return [x + step_size * (s + weight * inv_gamma2 * residual)
            + np.sqrt(2.0 * step_size) * torch.randn_like(x) for x, s in zip(xs, scores)]


VARIANTS = {"released_loop": _released_step, "fused_no_grad": _fused_step}


def time_steps(model, mixtures_nhwc: np.ndarray, num_components: int, *, variant: str,
               step_size: float, inv_gamma2: float, weight: float, level: int = 0,
               num_steps: int = 3, seed: int = 0, device: str = "cpu") -> list[float]:
  """Wall seconds of each of `num_steps` Langevin steps at one `level`, after one untimed
  warm-up step (PyTorch picks its kernels on the first call). On 'cuda' each step is
  synchronised before its clock stops."""
  if variant not in VARIANTS:
    raise ValueError(f"Unknown PyTorch variant {variant!r}; known: {sorted(VARIANTS)}.")
  step = VARIANTS[variant]
  torch.manual_seed(seed)
  model = model.to(device)
  mixtures = torch.from_numpy(np.array(mixtures_nhwc.transpose(0, 3, 1, 2))).to(device)
  labels = torch.full((mixtures.shape[0],), level, dtype=torch.long, device=device)
  sync = torch.cuda.synchronize if device.startswith("cuda") else lambda: None
  xs = [torch.rand_like(mixtures).requires_grad_(variant == "released_loop")
        for _ in range(num_components)]
  times = []
  for i in range(num_steps + 1):
    t0 = time.perf_counter()
    xs = step(model, xs, mixtures, labels, step_size, inv_gamma2, weight)
    sync()
    if i:
      times.append(time.perf_counter() - t0)
  return times
