"""Candidate operations on one DARTS edge. All keep the channel count; with stride 2 (the
edges from a reduction cell's inputs) they halve the spatial size, rounding up, so every op
of an edge yields the same shape at any input size.

Normalisation keeps no running statistics, so the network carries no buffers and its
meta-parameters are parameters only. The default is GroupNorm (per-sample statistics): in
1-shot episodes the support batch holds only n_way images, and batch statistics from five
images differ so much from those of a query batch that BatchNorm features learned on one
do not transfer to the other (measured: 0.61 vs 0.81 query accuracy on digits). BatchNorm
with batch statistics (transductive, as in Reptile) remains available as norm: batch.

Speed: the ops that begin with a ReLU let a mixed edge compute that ReLU once for all of
them (`after_relu`), and three ops have kernels of our own on the CPU (`cpu_kernels`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from metanas.searchers.darts.cpu_kernels import AvgPool3x3, DilatedDepthwiseConv, GroupNorm

NORMS = ("batch", "group")


def norm_layer(kind: str, channels: int, affine: bool = False) -> nn.Module:
    """'batch': batch statistics, no running buffers (transductive at test time).
    'group': per-sample statistics (GroupNorm), independent of the batch."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=affine, track_running_stats=False)
    if kind == "group":
        return GroupNorm(math.gcd(4, channels), channels, affine=affine)  # 4 groups, or fewer that divide
    raise ValueError(f"norm: expected one of {NORMS}, got {kind!r}")


class Zero(nn.Module):
    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return x.mul(0.0)


class _ReLUFirst(nn.Sequential):
    """ReLU, then the rest of the sequence; `after_relu` runs the rest on an input that
    is already rectified (a mixed edge shares one ReLU between its ops)."""

    def after_relu(self, x: torch.Tensor) -> torch.Tensor:
        for module in list(self)[1:]:
            x = module(x)
        return x


class ReLUConvBN(_ReLUFirst):
    def __init__(self, c: int, kernel: int, padding: int, norm: str, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c, c, kernel, stride=stride, padding=padding, bias=False),
            norm_layer(norm, c),
        )


class SepConv(_ReLUFirst):
    """Depthwise then pointwise convolution (one stack; DARTS stacks two)."""

    def __init__(self, c: int, dilation: int, norm: str, stride: int = 1) -> None:
        depthwise = (
            DilatedDepthwiseConv(c, dilation, stride)
            if dilation > 1
            else nn.Conv2d(c, c, 3, stride=stride, padding=dilation, dilation=dilation, groups=c, bias=False)
        )
        super().__init__(
            nn.ReLU(),
            depthwise,
            nn.Conv2d(c, c, 1, bias=False),
            norm_layer(norm, c),
        )


class FactorizedReduce(nn.Module):
    """Halve the spatial size without dropping three pixels in four: two 1x1 stride-2
    convolutions, the second on the grid shifted by one pixel, concatenated, then a norm
    (DARTS' skip_connect in a reduction cell). Needs at least 2 channels.

    A 1x1 convolution at stride 2 is a matrix product over the channels of every second
    pixel, and that is how it runs: oneDNN's stride-2 1x1 weight gradient writes outside
    its buffers for 2-7 input channels (`unsafe_kernels`), and on the channels-last view
    the product is faster too (measured at 25 x 16 x 28 x 28, forward + backward, one
    thread: 4.2 ms as convolutions, 2.7 ms as products)."""

    def __init__(self, c: int, norm: str) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(c, c - c // 2, 1, bias=False)  # (kept as convolutions: the
        self.conv_b = nn.Conv2d(c, c // 2, 1, bias=False)  # parameters and their names stay)
        self.norm = norm_layer(norm, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_relu(F.relu(x))

    def after_relu(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x.permute(0, 2, 3, 1)  # (n, h, w, c): a view when x is channels-last
        # pad before shifting, so both grids give ceil(n/2) rows and columns, odd n included
        shifted = F.pad(pixels, (0, 0, 0, 1, 0, 1))[:, 1::2, 1::2]
        a = pixels[:, ::2, ::2] @ self.conv_a.weight.flatten(1).t()
        b = shifted @ self.conv_b.weight.flatten(1).t()
        return self.norm(torch.cat([a, b], dim=-1).permute(0, 3, 1, 2))  # channels-last again


def make_op(name: str, c: int, norm: str = "batch", stride: int = 1) -> nn.Module:
    if name == "none":
        return Zero(stride)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, norm)
    if name == "conv_3x3":
        return ReLUConvBN(c, 3, 1, norm, stride)
    if name == "sep_conv_3x3":
        return SepConv(c, 1, norm, stride)
    if name == "dil_conv_3x3":
        return SepConv(c, 2, norm, stride)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == "avg_pool_3x3":
        return AvgPool3x3(stride)
    raise ValueError(f"unknown op {name!r}")


def droppable(op: nn.Module) -> bool:
    """Drop path leaves the identity alone (DARTS): it carries the signal unchanged, and
    'none' has nothing to drop."""
    return not isinstance(op, (nn.Identity, Zero))


def drop_path(x: torch.Tensor, p: float) -> torch.Tensor:
    """Zero each sample's whole output with probability p, scale the rest by 1/(1-p)."""
    keep = 1.0 - p
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask.div_(keep)
