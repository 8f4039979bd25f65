"""Our own CPU kernels for three ops that oneDNN / ATen run slowly on small channels-last
images, each a drop-in subclass of the torch module (same parameters, same state dict)
that changes nothing but float rounding. `own_kernel` False (`supernet.Speed`) gives the
library's path, which also runs on every other device.

Measured at 25 x 16 x 28 x 28, one thread, forward + backward (library -> ours):
dilated depthwise 3x3 about 2.4 -> 0.6 ms, 3x3 average pooling 1.3 -> 0.8 ms, GroupNorm
without affine 1.3 -> 0.6 ms (and far more accurate on data with a large mean: the
library's channels-last GroupNorm loses the variance to cancellation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Below this many pixels per image the library's GroupNorm is as fast or faster.
GROUP_NORM_MIN_PIXELS = 196


def _use_own(module: nn.Module, x: torch.Tensor) -> bool:
    return module.own_kernel and x.device.type == "cpu" and x.dim() == 4


class DilatedDepthwiseConv(nn.Conv2d):
    """Depthwise 3x3, dilation d, padding d. At stride 1 its backward is
    `_DilatedDepthwise`'s."""

    def __init__(self, c: int, dilation: int, stride: int = 1) -> None:
        super().__init__(c, c, 3, stride=stride, padding=dilation, dilation=dilation, groups=c, bias=False)
        self.own_kernel = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _use_own(self, x) and self.stride == (1, 1) and torch.is_grad_enabled():
            return _DilatedDepthwise.apply(x, self.weight, self.dilation[0])
        return super().forward(x)


class _DilatedDepthwise(torch.autograd.Function):
    """The library's backward of a dilated depthwise convolution takes a slow path on the
    CPU (at 25 x 16 x 28 x 28: 1.1 ms for the input's gradient, 1.0 ms for the weight's).
    The input's gradient is the forward convolution with the kernel flipped (0.12 ms). For
    the weight's: a dilated convolution is d*d plain ones, each over the pixels of one
    phase (rows p mod d, columns q mod d), so the phases stacked as a batch take the plain
    convolution's fast weight gradient (0.3 ms, copies included)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, d: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.d = d
        return F.conv2d(x, weight, padding=d, dilation=d, groups=weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        d, c = ctx.d, weight.shape[0]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight.flip(2, 3), padding=d, dilation=d, groups=c)
        if ctx.needs_input_grad[1]:
            if x.shape[-2] % d == 0 and x.shape[-1] % d == 0:
                args = (_phases(grad, d), _phases(x, d), weight, None, [1, 1], [1, 1], [1, 1])
            else:  # phases of unequal sizes: the library's own
                args = (grad, x, weight, None, [1, 1], [d, d], [d, d])
            grad_w = torch.ops.aten.convolution_backward(*args, False, [0, 0], c, [False, True, False])[1]
        return grad_x, grad_w, None


def _phases(x: torch.Tensor, d: int) -> torch.Tensor:
    """The d*d subgrids x[..., p::d, q::d], stacked along the batch."""
    parts = [x[:, :, p::d, q::d] for p in range(d) for q in range(d)]
    return torch.cat(parts).contiguous(memory_format=torch.channels_last)


class AvgPool3x3(nn.AvgPool2d):
    """nn.AvgPool2d(3, stride, padding=1, count_include_pad=False); at stride 1, `_BoxMean`."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__(3, stride=stride, padding=1, count_include_pad=False)
        self.own_kernel = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _use_own(self, x) and self.stride == 1:
            return _BoxMean.apply(x)
        return super().forward(x)


class _BoxMean(torch.autograd.Function):
    """The 3x3 mean over the window's pixels inside the image, as a depthwise convolution
    with a kernel of ones times 1 / each window's pixel count: the library's convolution
    is faster than its pooling. The kernel is symmetric, so the backward is the same
    convolution of grad / count."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ones, inverse_count = _box_constants(x)
        ctx.save_for_backward(ones, inverse_count)
        return F.conv2d(x, ones, padding=1, groups=x.shape[1]).mul_(inverse_count)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        ones, inverse_count = ctx.saved_tensors
        weighted = (grad * inverse_count).contiguous(memory_format=torch.channels_last)
        return F.conv2d(weighted, ones, padding=1, groups=grad.shape[1])


def _box_constants(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c, (h, w) = x.shape[1], x.shape[-2:]
    ones = torch.ones(c, 1, 3, 3, dtype=x.dtype, device=x.device)
    count = F.conv2d(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device), ones[:1], padding=1)
    return ones, count.reciprocal_()


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm; without affine, on channels-last images of at least
    GROUP_NORM_MIN_PIXELS pixels, `_ChannelsLastGroupNorm`.

    The library's channels-last backward writes outside its buffers when the affine
    parameters need gradients and the input does not (torch 2.13, `unsafe_kernels`), so
    that case runs on a contiguous copy: own kernel switched on or off."""

    def __init__(self, groups: int, channels: int, affine: bool = True) -> None:
        super().__init__(groups, channels, affine=affine)
        self.own_kernel = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        if (
            _use_own(self, x)
            and not self.affine
            and x.shape[-2] * x.shape[-1] >= GROUP_NORM_MIN_PIXELS
            and channels_last
        ):
            return _ChannelsLastGroupNorm.apply(x, self.num_groups, self.eps)
        if channels_last and x.device.type == "cpu" and self._affine_grad_only(x):
            return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)
        return super().forward(x)

    def _affine_grad_only(self, x: torch.Tensor) -> bool:
        return self.affine and torch.is_grad_enabled() and self.weight.requires_grad and not x.requires_grad


class _ChannelsLastGroupNorm(torch.autograd.Function):
    """GroupNorm on an (n, h, w, c) memory layout seen as (n, h*w, c): per-channel sums
    over the pixels are fast reductions over the middle dimension, then summed per group.
    Two passes (the mean, then the variance of the centred values), so a large mean does
    not cancel the variance."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, groups: int, eps: float) -> torch.Tensor:  # type: ignore[override]
        n, c, h, w = x.shape
        flat = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view: x is channels-last
        count = h * w * (c // groups)
        y = flat - _group_mean(flat.sum(1), groups, count)
        inv_std = _group_mean(torch.linalg.vecdot(y, y, dim=1), groups, count).add_(eps).rsqrt_()
        y.mul_(inv_std)
        ctx.save_for_backward(y, inv_std)
        ctx.groups, ctx.count = groups, count
        return y.view(n, h, w, c).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        y, inv_std = ctx.saved_tensors
        n, c, h, w = grad.shape
        g = grad.permute(0, 2, 3, 1).reshape(n, h * w, c)  # (copies only if not channels-last)
        mean_g = _group_mean(g.sum(1), ctx.groups, ctx.count)
        mean_gy = _group_mean(torch.linalg.vecdot(g, y, dim=1), ctx.groups, ctx.count)
        # dx = inv_std * (g - mean(g) - y * mean(g * y)), per group
        dx = torch.addcmul(-mean_g * inv_std, g, inv_std).addcmul_(y, -mean_gy * inv_std)
        return dx.view(n, h, w, c).permute(0, 3, 1, 2), None, None


def _group_mean(channel_sums: torch.Tensor, groups: int, count: int) -> torch.Tensor:
    """(n, c) per-channel sums -> (n, 1, c): the mean of each channel's group."""
    n, c = channel_sums.shape
    means = channel_sums.view(n, groups, c // groups).sum(2, keepdim=True) / count
    return means.expand(n, groups, c // groups).reshape(n, 1, c)
