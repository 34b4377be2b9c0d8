"""A PyTorch (NCHW) implementation of NCSN's `CondRefineNetDilated`: the parity tests'
reference, and the network the benchmark's PyTorch baseline runs (benchmarks/torch_loop.py).

Written for this project from the published architecture (ermongroup/ncsn@7f27f4a,
docs/ncsn.md); its module tree reproduces the published state-dict keys
(`ncsn_*_state_dict.tsv`), so a model wrapped in `nn.DataParallel` saves exactly the keys of
the released `checkpoint.pth`. `from_jax`
loads a Flax parameter tree into it (the converter's key mapping, run backwards), so both
frameworks can run the same weights.

It imports torch, so it lives beside the tests, outside the library: basis_jax never imports
torch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def _conv(cin, cout, k=3, dilation=1, bias=True):
  return nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, bias=bias)


class CondInstanceNormPlus(nn.Module):

  def __init__(self, c, num_classes):
    super().__init__()
    self.c = c
    self.instance_norm = nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
    self.embed = nn.Embedding(num_classes, 3 * c)
    with torch.no_grad():
      self.embed.weight[:, :2 * c].normal_(1.0, 0.02)
      self.embed.weight[:, 2 * c:].zero_()

  def forward(self, x, y):
    mu = x.mean(dim=(2, 3))
    mu = (mu - mu.mean(-1, keepdim=True)) / torch.sqrt(mu.var(-1, keepdim=True) + 1e-5)
    gamma, alpha, beta = self.embed(y).chunk(3, dim=-1)
    h = self.instance_norm(x) + mu[:, :, None, None] * alpha[:, :, None, None]
    return gamma[:, :, None, None] * h + beta[:, :, None, None]


class ConvMeanPool(nn.Module):

  def __init__(self, cin, cout, k):
    super().__init__()
    self.conv = _conv(cin, cout, k)

  def forward(self, x):
    x = self.conv(x)
    return (x[:, :, ::2, ::2] + x[:, :, 1::2, ::2] + x[:, :, ::2, 1::2] + x[:, :, 1::2, 1::2]) / 4.


class ResBlock(nn.Module):

  def __init__(self, cin, cout, ncls, down=False, dilation=None):
    super().__init__()
    d = dilation or 1
    self.skip_is_identity = cin == cout and not down
    self.normalize1 = CondInstanceNormPlus(cin, ncls)
    mid = cin if down else cout
    self.conv1 = _conv(cin, mid, dilation=d)
    self.normalize2 = CondInstanceNormPlus(mid, ncls)
    if down and dilation is None:
      self.conv2 = ConvMeanPool(mid, cout, 3)
      self.shortcut = ConvMeanPool(cin, cout, 1)
    else:
      self.conv2 = _conv(mid, cout, dilation=d)
      if not self.skip_is_identity:
        self.shortcut = _conv(cin, cout, 3 if dilation else 1, dilation=d)

  def forward(self, x, y):
    h = self.conv1(F.elu(self.normalize1(x, y)))
    h = self.conv2(F.elu(self.normalize2(h, y)))
    return (x if self.skip_is_identity else self.shortcut(x)) + h


class RCU(nn.Module):

  def __init__(self, c, n_blocks, n_stages, ncls):
    super().__init__()
    self.n_blocks, self.n_stages = n_blocks, n_stages
    for i in range(1, n_blocks + 1):
      for j in range(1, n_stages + 1):
        self.add_module(f"{i}_{j}_norm", CondInstanceNormPlus(c, ncls))
        self.add_module(f"{i}_{j}_conv", _conv(c, c, bias=False))

  def forward(self, x, y):
    for i in range(1, self.n_blocks + 1):
      h = x
      for j in range(1, self.n_stages + 1):
        h = getattr(self, f"{i}_{j}_conv")(F.elu(getattr(self, f"{i}_{j}_norm")(h, y)))
      x = x + h
    return x


class MSF(nn.Module):

  def __init__(self, in_planes, c, ncls):
    super().__init__()
    self.convs = nn.ModuleList([_conv(p, c) for p in in_planes])
    self.norms = nn.ModuleList([CondInstanceNormPlus(p, ncls) for p in in_planes])

  def forward(self, xs, y, size):
    out = 0.
    for x, cv, nm in zip(xs, self.convs, self.norms):
      out = out + F.interpolate(cv(nm(x, y)), size=size, mode="bilinear", align_corners=True)
    return out


class CRP(nn.Module):

  def __init__(self, c, n_stages, ncls):
    super().__init__()
    self.convs = nn.ModuleList([_conv(c, c, bias=False) for _ in range(n_stages)])
    self.norms = nn.ModuleList([CondInstanceNormPlus(c, ncls) for _ in range(n_stages)])
    self.pool = nn.AvgPool2d(5, stride=1, padding=2)

  def forward(self, x, y):
    x = F.elu(x)
    path = x
    for cv, nm in zip(self.convs, self.norms):
      path = cv(self.pool(nm(path, y)))
      x = x + path
    return x


class RefineBlock(nn.Module):

  def __init__(self, in_planes, c, ncls, start=False, end=False):
    super().__init__()
    self.adapt_convs = nn.ModuleList([RCU(p, 2, 2, ncls) for p in in_planes])
    self.output_convs = RCU(c, 3 if end else 1, 2, ncls)
    if not start:
      self.msf = MSF(in_planes, c, ncls)
    self.crp = CRP(c, 2, ncls)

  def forward(self, xs, y, size):
    hs = [a(x, y) for a, x in zip(self.adapt_convs, xs)]
    h = self.msf(hs, y, size) if len(hs) > 1 else hs[0]
    return self.output_convs(self.crp(h, y), y)


class CondRefineNetDilated(nn.Module):

  def __init__(self, channels=1, ngf=64, num_classes=10):
    super().__init__()
    f, k = ngf, num_classes
    self.begin_conv = _conv(channels, f)
    self.normalizer = CondInstanceNormPlus(f, k)
    self.end_conv = _conv(f, channels)
    self.res1 = nn.ModuleList([ResBlock(f, f, k), ResBlock(f, f, k)])
    self.res2 = nn.ModuleList([ResBlock(f, 2 * f, k, down=True), ResBlock(2 * f, 2 * f, k)])
    self.res3 = nn.ModuleList([ResBlock(2 * f, 2 * f, k, down=True, dilation=2),
                               ResBlock(2 * f, 2 * f, k, dilation=2)])
    self.res4 = nn.ModuleList([ResBlock(2 * f, 2 * f, k, down=True, dilation=4),
                               ResBlock(2 * f, 2 * f, k, dilation=4)])
    self.refine1 = RefineBlock([2 * f], 2 * f, k, start=True)
    self.refine2 = RefineBlock([2 * f, 2 * f], 2 * f, k)
    self.refine3 = RefineBlock([2 * f, 2 * f], f, k)
    self.refine4 = RefineBlock([f, f], f, k, end=True)

  def forward(self, x, y):
    h = self.begin_conv(2 * x - 1.)
    layers = []
    for stage in (self.res1, self.res2, self.res3, self.res4):
      for blk in stage:
        h = blk(h, y)
      layers.append(h)
    l1, l2, l3, l4 = layers
    r = self.refine1([l4], y, l4.shape[2:])
    r = self.refine2([l3, r], y, l3.shape[2:])
    r = self.refine3([l2, r], y, l2.shape[2:])
    r = self.refine4([l1, r], y, l1.shape[2:])
    return self.end_conv(F.elu(self.normalizer(r, y)))


def make_checkpoint(path, channels, ngf, num_classes=10, seed=0, perturb=True):
  """Saves a random model the way the reference does: [state_dict, optimizer_state] with
  DataParallel's 'module.' keys. Returns the (unwrapped) model in eval mode.

  `perturb` adds noise to the CIN++ embeddings so that γ, α and β all matter (at init β=0
  and γ≈α≈1, which would hide a mix-up of the three thirds).
  """
  torch.manual_seed(seed)
  model = CondRefineNetDilated(channels, ngf, num_classes)
  if perturb:
    with torch.no_grad():
      for name, p in model.named_parameters():
        if name.endswith("embed.weight"):
          p.add_(0.3 * torch.randn_like(p))
  wrapped = nn.DataParallel(model)
  optimizer = torch.optim.Adam(wrapped.parameters(), lr=1e-3)
  torch.save([wrapped.state_dict(), optimizer.state_dict()], path)
  return model.eval()


def from_jax(params, channels: int, ngf: int, num_classes: int = 10) -> CondRefineNetDilated:
  """A model in eval mode holding the Flax NCSN parameters `params` (an nnx.State).

  The key mapping is the converter's (`convert_weights.ncsn.torch_key`); every parameter
  must be assigned exactly once with its shape, as in the forward conversion.
  """
  # pylint: disable=import-outside-toplevel
  from basis_jax.files import checkpoint_io
  from convert_weights import ncsn as convert_ncsn
  model = CondRefineNetDilated(channels, ngf, num_classes)
  targets = dict(model.named_parameters())
  flat, _ = checkpoint_io.flatten(params)
  state = {}
  for path, value in flat.items():
    value = np.asarray(value, np.float32)
    state[convert_ncsn.torch_key(path)] = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value
  checkpoint_io.check_keys({k: tuple(v.shape) for k, v in targets.items()},
                           {k: v.shape for k, v in state.items()}, "the Flax parameters")
  with torch.no_grad():
    for key, value in state.items():
      targets[key].copy_(torch.from_numpy(np.array(value)))
  return model.eval()


def score(model, x_nhwc: np.ndarray, level: int) -> np.ndarray:
  """The model's score for NHWC numpy input, NHWC numpy output (for parity checks)."""
  with torch.no_grad():
    x = torch.from_numpy(np.array(x_nhwc.transpose(0, 3, 1, 2)))
    y = torch.full((x.shape[0],), level, dtype=torch.long)
    return model(x, y).numpy().transpose(0, 2, 3, 1)
