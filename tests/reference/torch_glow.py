"""A small PyTorch Glow with the state-dict layout of y0ast/Glow-PyTorch, for parity tests.

Written for these tests (not copied): NCHW, zero-padded 3×3 convolutions, actnorm
log-scales stored without a ×3 factor, zero convs with a ×3 log-scale, `prior_h` buffer,
module names matching the port so its state dict has the same keys and shapes:

  flow.layers.{i}  = [squeeze, K × FlowStep, Split2d] per level (no split at the top)
  FlowStep: actnorm.{bias,logs}, invconv.weight | invconv.{lower,upper,log_s,p,sign_s},
            block.0.conv.weight, block.0.actnorm.*, block.2.*, block.4.conv.{weight,bias},
            block.4.logs
  Split2d: conv.conv.{weight,bias}, conv.logs;  learn_top_fn.conv.*, learn_top_fn.logs
"""

import math

import torch
from torch import nn
import torch.nn.functional as F


class ActNorm(nn.Module):

  def __init__(self, c):
    super().__init__()
    self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))
    self.logs = nn.Parameter(torch.zeros(1, c, 1, 1))

  def forward(self, x):
    return (x + self.bias) * torch.exp(self.logs), self.logs.sum() * x.shape[2] * x.shape[3]


class ConvActNorm(nn.Module):

  def __init__(self, cin, cout, k):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
    self.actnorm = ActNorm(cout)

  def forward(self, x):
    return self.actnorm(self.conv(x))[0]


class ZeroConv(nn.Module):

  def __init__(self, cin, cout):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, 3, padding=1)
    self.logs = nn.Parameter(torch.zeros(cout, 1, 1))

  def forward(self, x):
    return self.conv(x) * torch.exp(3.0 * self.logs)


class InvConv(nn.Module):

  def __init__(self, c, lu):
    super().__init__()
    self.lu = lu
    w = torch.linalg.qr(torch.randn(c, c))[0]
    if not lu:
      self.weight = nn.Parameter(w)
      return
    p, lower, upper = torch.linalg.lu(w)
    s = torch.diagonal(upper)
    self.register_buffer("p", p)
    self.register_buffer("sign_s", torch.sign(s))
    self.lower = nn.Parameter(lower)
    self.upper = nn.Parameter(torch.triu(upper, 1))
    self.log_s = nn.Parameter(torch.log(torch.abs(s)))

  def forward(self, x):
    if self.lu:
      c = self.log_s.shape[0]
      lower = torch.tril(self.lower, -1) + torch.eye(c)
      upper = torch.triu(self.upper, 1) + torch.diag(self.sign_s * torch.exp(self.log_s))
      w, logabsdet = self.p @ lower @ upper, self.log_s.sum()
    else:
      w, logabsdet = self.weight, torch.linalg.slogdet(self.weight)[1]
    return F.conv2d(x, w[:, :, None, None]), logabsdet * x.shape[2] * x.shape[3]


class FlowStep(nn.Module):

  def __init__(self, c, width, affine, lu):
    super().__init__()
    self.affine = affine
    self.actnorm = ActNorm(c)
    self.invconv = InvConv(c, lu)
    self.block = nn.Sequential(ConvActNorm(c // 2, width, 3), nn.ReLU(),
                               ConvActNorm(width, width, 1), nn.ReLU(),
                               ZeroConv(width, c if affine else c // 2))

  def forward(self, x):
    z, ld1 = self.actnorm(x)
    z, ld2 = self.invconv(z)
    c = z.shape[1] // 2
    z1, z2 = z[:, :c], z[:, c:]
    h = self.block(z1)
    if self.affine:
      log_scale = F.logsigmoid(h[:, 1::2] + 2.0)
      z2 = (z2 + h[:, 0::2]) * torch.exp(log_scale)
      ld3 = log_scale.sum(dim=(1, 2, 3))
    else:
      z2, ld3 = z2 + h, torch.zeros(x.shape[0])
    return torch.cat([z1, z2], 1), ld1 + ld2 + ld3


class Squeeze(nn.Module):

  def forward(self, x):
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, 4 * c, h // 2, w // 2)


class Split(nn.Module):

  def __init__(self, c):
    super().__init__()
    self.conv = ZeroConv(c // 2, c)


def gaussian_log_prob(mean, logs, x):
  return (-0.5 * (math.log(2 * math.pi) + 2 * logs + (x - mean)**2 * torch.exp(-2 * logs))
          ).sum(dim=(1, 2, 3))


class FlowNet(nn.Module):

  def __init__(self, image_shape, width, depth, levels, affine, lu):
    super().__init__()
    h, w, c = image_shape
    self.layers = nn.ModuleList()
    for i in range(levels):
      c, h, w = 4 * c, h // 2, w // 2
      self.layers.append(Squeeze())
      for _ in range(depth):
        self.layers.append(FlowStep(c, width, affine, lu))
      if i < levels - 1:
        self.layers.append(Split(c))
        c //= 2
    self.top_shape = (c, h, w)


class TorchGlow(nn.Module):

  def __init__(self, image_shape, width, depth, levels, affine=True, lu=False, learn_top=True):
    super().__init__()
    self.flow = FlowNet(image_shape, width, depth, levels, affine, lu)
    c, h, w = self.flow.top_shape
    self.learn_top = learn_top
    if learn_top:
      self.learn_top_fn = ZeroConv(2 * c, 2 * c)
    self.register_buffer("prior_h", torch.zeros(1, 2 * c, h, w))

  def forward(self, x):
    """x NCHW -> (zs, log p(x)) with zs the split-off halves then the top latent."""
    z, logdet, logp, zs = x, torch.zeros(x.shape[0]), torch.zeros(x.shape[0]), []
    for layer in self.flow.layers:
      if isinstance(layer, Squeeze):
        z = layer(z)
      elif isinstance(layer, FlowStep):
        z, ld = layer(z)
        logdet = logdet + ld
      else:
        c = z.shape[1] // 2
        z, z2 = z[:, :c], z[:, c:]
        h = layer.conv(z)
        logp = logp + gaussian_log_prob(h[:, 0::2], h[:, 1::2], z2)
        zs.append(z2)
    h = self.prior_h.repeat(x.shape[0], 1, 1, 1)
    if self.learn_top:
      h = self.learn_top_fn(h)
    c = h.shape[1] // 2
    logp = logp + gaussian_log_prob(h[:, :c], h[:, c:], z)
    zs.append(z)
    return zs, logdet + logp
