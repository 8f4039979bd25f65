"""Candidate operations on one DARTS edge. All keep the channel count and spatial size.

Normalisation keeps no running statistics, so the network carries no buffers and its
meta-parameters are parameters only. The default is GroupNorm (per-sample statistics): in
1-shot episodes the support batch holds only n_way images, and batch statistics from five
images differ so much from those of a query batch that BatchNorm features learned on one
do not transfer to the other (measured: 0.61 vs 0.81 query accuracy on digits). BatchNorm
with batch statistics (transductive, as in Reptile) remains available as norm: batch.

Speed: the ops that begin with a ReLU let a mixed edge compute that ReLU once for all of
them (`after_relu`).
"""

from __future__ import annotations

import torch
from torch import nn


NORMS = ("batch", "group")


def norm_layer(kind: str, channels: int, affine: bool = False) -> nn.Module:
    """'batch': batch statistics, no running buffers (transductive at test time).
    'group': per-sample statistics (GroupNorm), independent of the batch."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=affine, track_running_stats=False)
    if kind == "group":
        return nn.GroupNorm(min(4, channels), channels, affine=affine)
    raise ValueError(f"norm: expected one of {NORMS}, got {kind!r}")


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class _ReLUFirst(nn.Sequential):
    """ReLU, then the rest of the sequence; `after_relu` runs the rest on an input that
    is already rectified (a mixed edge shares one ReLU between its ops)."""

    def after_relu(self, x: torch.Tensor) -> torch.Tensor:
        for module in list(self)[1:]:
            x = module(x)
        return x


class ReLUConvBN(_ReLUFirst):
    def __init__(self, c: int, kernel: int, padding: int, norm: str) -> None:
        super().__init__(nn.ReLU(), nn.Conv2d(c, c, kernel, padding=padding, bias=False), norm_layer(norm, c))


class SepConv(_ReLUFirst):
    """Depthwise then pointwise convolution (one stack; DARTS stacks two)."""

    def __init__(self, c: int, dilation: int, norm: str) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=dilation, dilation=dilation, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            norm_layer(norm, c),
        )


def make_op(name: str, c: int, norm: str = "batch") -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "conv_3x3":
        return ReLUConvBN(c, 3, 1, norm)
    if name == "sep_conv_3x3":
        return SepConv(c, 1, norm)
    if name == "dil_conv_3x3":
        return SepConv(c, 2, norm)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=1, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown op {name!r}")
