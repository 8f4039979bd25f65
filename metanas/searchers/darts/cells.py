"""The parts of a cell network: a mixed edge (every op, softmax-weighted), a cell (a DAG of
edges over its inputs and nodes), and the order of normal and reduction cells."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from metanas.searchers.darts.cell_space import CellSpace
from metanas.searchers.darts.ops import (
    FactorizedReduce,
    ReLUConvBN,
    drop_path,
    droppable,
    make_op,
    norm_layer,
)

# edge_module(k, reduction, stride): the module of edge k of a normal or reduction cell
EdgeModule = Callable[[int, bool, int], nn.Module]


def cell_kinds(space: CellSpace) -> list[bool]:
    """Whether each cell is a reduction cell: with reduction, one between every two normal
    cells (where the 2x2 max pools are otherwise)."""
    if not space.reduction:
        return [False] * space.cells
    return [i % 2 == 1 for i in range(2 * space.cells - 1)]


class MixedOp(nn.Module):
    """Edge weights times every op's output, summed. With `partial` K > 1 (PC-DARTS, Xu et
    al. 2020) only the first c/K channels go through the ops (built for c/K channels); the
    rest bypass them unchanged (max-pooled 2x2 on a stride-2 edge), then the two parts are
    concatenated and the channels shuffled in K groups, so the next edge mixes others."""

    def __init__(
        self,
        ops: Sequence[str],
        c: int,
        norm: str,
        shared_relu: bool = True,
        stride: int = 1,
        partial: int = 1,
        fused_sum: bool = True,
    ) -> None:
        super().__init__()
        if partial < 1 or c % partial:
            raise ValueError(f"partial_channels: must be >= 1 and divide the {c} channels, got {partial}")
        self.partial = partial
        self.mixed_channels = c // partial
        self.ops = nn.ModuleList(make_op(o, self.mixed_channels, norm, stride) for o in ops)
        # 'none' contributes exactly zero; skipping it saves work without changing the sum.
        self.active = [i for i, o in enumerate(ops) if o != "none"]
        self.droppable = [droppable(op) for op in self.ops]
        self.shared_relu = shared_relu
        self.fused_sum = fused_sum
        self.stride = stride

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, live: Sequence[bool] | None = None, drop: float = 0.0
    ) -> torch.Tensor:
        """`live[i]` False: op i's weight is exactly 0 (pruned), so it is skipped too."""
        if self.partial == 1:
            return self.mix(x, weights, live, drop)
        mixed = self.mix(x[:, : self.mixed_channels], weights, live, drop)
        bypass = x[:, self.mixed_channels :]
        if self.stride > 1:  # to the ops' output size, ceil(n/2), as PC-DARTS' 2x2 max pool
            bypass = F.max_pool2d(bypass, 2, self.stride, ceil_mode=True)
        return F.channel_shuffle(torch.cat([mixed, bypass], dim=1), self.partial)

    def mix(
        self, x: torch.Tensor, weights: torch.Tensor, live: Sequence[bool] | None = None, drop: float = 0.0
    ) -> torch.Tensor:
        """The weighted sum of the ops on `x` (all of it, or the mixed part of the channels)."""
        relu = None  # computed once for every op that starts with one
        used, outs = [], []
        for i in self.active:
            if live is not None and not live[i]:
                continue
            op = self.ops[i]
            if self.shared_relu and hasattr(op, "after_relu"):
                relu = F.relu(x) if relu is None else relu
                out = op.after_relu(relu)
            else:
                out = op(x)
            if drop > 0.0 and self.droppable[i]:
                out = drop_path(out, drop)
            used.append(i)
            outs.append(out)
        if not outs:  # every op skipped: the edge adds zeros of the right shape
            return x[:, :, :: self.stride, :: self.stride].mul(0.0)
        if self.fused_sum:
            return _WeightedSum.apply(weights, used, *outs)
        total = weights[used[0]] * outs[0]  # (not 0 + ...: adding to 0 is a pass of its own)
        for i, out in zip(used[1:], outs[1:]):
            total = total + weights[i] * out
        return total


class _WeightedSum(torch.autograd.Function):
    """sum_j weights[used[j]] * outs[j], one pass per term (the autograd of `w * out` chains
    writes each product, then adds it); the backward takes each weight's gradient as a dot
    product, without writing grad * out first (measured: a supernet step 5% faster)."""

    @staticmethod
    def forward(ctx, weights: torch.Tensor, used: list[int], *outs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(weights, *outs)
        ctx.used = used
        total = outs[0] * weights[used[0]]
        for i, out in zip(used[1:], outs[1:]):
            total.addcmul_(out, weights[i])
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        weights, *outs = ctx.saved_tensors
        grad_weights = torch.zeros_like(weights) if ctx.needs_input_grad[0] else None
        grad_outs = []
        for j, (i, out) in enumerate(zip(ctx.used, outs)):
            if grad_weights is not None:
                grad_weights[i] = _dot(grad, out)
            grad_outs.append(grad * weights[i] if ctx.needs_input_grad[2 + j] else None)
        return (grad_weights, None, *grad_outs)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum(a * b), without the product tensor when both lie in memory alike."""
    if a.dtype == b.dtype:
        if a.is_contiguous() and b.is_contiguous():
            return torch.dot(a.view(-1), b.view(-1))
        cl = torch.channels_last
        if a.dim() == 4 and a.is_contiguous(memory_format=cl) and b.is_contiguous(memory_format=cl):
            return torch.dot(a.permute(0, 2, 3, 1).reshape(-1), b.permute(0, 2, 3, 1).reshape(-1))
    return (a * b).sum()


class Cell(nn.Module):
    """A normal cell keeps the spatial size; a reduction cell halves it (its edges from the
    cell inputs run at stride 2). Neither changes the channel count: our networks stay
    narrow, and doubling channels at each reduction is DARTS' choice for larger images."""

    def __init__(
        self, space: CellSpace, edge_module: EdgeModule, reduction: bool = False, reduction_prev: bool = False
    ) -> None:
        super().__init__()
        self.space = space
        self.reduction = reduction
        self.edges = nn.ModuleList(
            edge_module(k, reduction, 2 if reduction and source < space.input_cells else 1)
            for k, (_, source) in enumerate(space.edges)
        )
        c = space.channels
        self.combine = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c * space.nodes, c, 1, bias=False), norm_layer(space.norm, c, affine=True)
        )
        if space.input_cells == 2:  # DARTS' preprocessing; s0 is twice s1's size after a reduction cell
            self.pre0 = FactorizedReduce(c, space.norm) if reduction_prev else ReLUConvBN(c, 1, 0, space.norm)
            self.pre1 = ReLUConvBN(c, 1, 0, space.norm)

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        weights: torch.Tensor | None = None,
        live: list[list[bool]] | None = None,
        drop: float = 0.0,
        scales: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """s1: the previous cell's output; s0: the one before (read only with input_cells 2).
        `weights` None: a discrete cell (each edge one op). `scales`: a factor per edge
        (edge normalisation), or None."""
        states = [self.pre0(s0), self.pre1(s1)] if self.space.input_cells == 2 else [s1]
        k = 0
        for _ in range(self.space.nodes):
            total = None
            for source in range(len(states)):  # every cell input and every earlier node
                out = self._edge(k, states[source], weights, live, drop)
                if scales is not None:
                    out = scales[k] * out
                total = out if total is None else total + out
                k += 1
            states.append(total)
        return self.combine(torch.cat(states[self.space.input_cells :], dim=1))

    def _edge(self, k: int, x: torch.Tensor, weights, live, drop: float) -> torch.Tensor:
        edge = self.edges[k]
        if weights is not None:
            return edge(x, weights[k], None if live is None else live[k], drop)
        out = edge(x)
        return drop_path(out, drop) if drop > 0.0 and droppable(edge) else out
