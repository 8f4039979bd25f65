"""Library kernels known to write outside their buffers on the CPU, as patterns over the
aten calls that reach them, and a guard that refuses a call matching one before it runs.

The networks never take these paths (`ops.FactorizedReduce` and `cpu_kernels.GroupNorm`
route around them); the tests run every network and every speed setting under
`KernelGuard` to keep it so. Each pattern was found by running the networks under
valgrind's memcheck and with glibc's heap checks (MALLOC_CHECK_=3) under each of oneDNN's
instruction sets (ONEDNN_MAX_CPU_ISA: SSE41, AVX, AVX2, AVX512_CORE), 1 and 2 threads:

- `conv_1x1_stride2_weight_grad`: oneDNN's 1x1 convolution at stride 2 writes outside its
  buffers when it computes the weight's gradient for 2-7 input channels, with AVX2 (every
  AMD EPYC before Zen 4 runs it) and with AVX-512 on 2 threads: glibc aborts or the
  process segfaults (and on an AMD EPYC, the numbers changed silently first). Seen on
  torch 2.13.0, 2.14.1 and 2.15.0.
- `group_norm_backward_affine_without_input_grad`: the channels-last GroupNorm backward
  writes outside its buffers when the affine weight needs a gradient and the input does
  not (every instruction set). Seen on torch 2.13.0; fixed in 2.14.1.

`REPROS` holds each pattern as a few lines of plain torch: the guard's own test checks it
refuses each of them, in the test's process and in a fresh interpreter. Run one without
the guard (`python -c`, with ONEDNN_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=2 MALLOC_CHECK_=3) to
see whether an installed torch still has the defect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def _channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)


def _conv_1x1_stride2_weight_grad(func: Any, args: tuple) -> bool:
    if func is not aten.convolution_backward.default:
        return False
    _, x, weight, _, stride, *_, output_mask = args
    return (
        x.device.type == "cpu" and tuple(weight.shape[-2:]) == (1, 1) and max(stride) > 1 and output_mask[1]
    )


def _group_norm_backward_affine_without_input_grad(func: Any, args: tuple) -> bool:
    if func is not aten.native_group_norm_backward.default:
        return False
    _, x, _, _, weight, *_, output_mask = args
    affine_grad = weight is not None and (output_mask[1] or output_mask[2])
    return x.device.type == "cpu" and _channels_last(x) and affine_grad and not output_mask[0]


@dataclass(frozen=True)
class UnsafePattern:
    name: str
    matches: Callable[[Any, tuple], bool]


PATTERNS = (
    UnsafePattern("conv_1x1_stride2_weight_grad", _conv_1x1_stride2_weight_grad),
    UnsafePattern(
        "group_norm_backward_affine_without_input_grad", _group_norm_backward_affine_without_input_grad
    ),
)

# The shortest plain-torch program that takes each pattern (for a fresh interpreter).
REPROS = {
    "conv_1x1_stride2_weight_grad": (
        "import torch\n"
        "conv = torch.nn.Conv2d(4, 4, 1, stride=2, bias=False).to(memory_format=torch.channels_last)\n"
        "x = torch.randn(5, 4, 8, 8).contiguous(memory_format=torch.channels_last)\n"
        "for _ in range(20):\n"
        "    conv(x).sum().backward()\n"
    ),
    "group_norm_backward_affine_without_input_grad": (
        "import torch\n"
        "gn = torch.nn.GroupNorm(2, 4)\n"
        "x = torch.randn(6, 4, 8, 8).contiguous(memory_format=torch.channels_last)\n"
        "gn(x).sum().backward()\n"
    ),
}


class UnsafeKernelCall(RuntimeError):
    """A call matched a known unsafe pattern; it was refused before it ran."""


class KernelGuard(TorchDispatchMode):
    """Within `with KernelGuard():`, a call that matches a pattern raises UnsafeKernelCall
    instead of running. Tests only: it sees every aten call, so it slows everything."""

    def __init__(self, patterns: tuple[UnsafePattern, ...] = PATTERNS) -> None:
        super().__init__()
        self.patterns = patterns
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        for pattern in self.patterns:
            if pattern.matches(func, args):
                raise UnsafeKernelCall(f"{pattern.name}: {func} with {_describe(args)}")
        return func(*args, **(kwargs or {}))


def _describe(args: tuple) -> str:
    return ", ".join(
        f"{tuple(a.shape)} strides {a.stride()}" if isinstance(a, torch.Tensor) else repr(a) for a in args
    )
