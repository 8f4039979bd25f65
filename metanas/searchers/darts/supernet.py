"""The DARTS supernet (every edge a softmax-weighted mix of all ops) and the discrete
network built from a genotype (every edge one op). Both share one skeleton:

    stem conv -> [cell -> 2x2 max pool] * (cells - 1) -> cell -> 4x4 average pool -> linear

The head keeps a coarse 4x4 spatial grid instead of global average pooling: on small images
(digits, rotated classes) where a stroke is matters as much as what it is, and global
pooling would make a digit and its rotation look alike.

The architecture parameters `alpha` (edges x ops) are shared by all cells.

Speed (`Speed`, on by default; `metanas bench step` measures it side by side): the
networks run channels-last, which oneDNN's convolutions and pools on CPU (and cuDNN on a
GPU) are fastest with, and a mixed edge computes the ReLU its ops begin with once. Both
change nothing but float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from metanas.searchers.darts.cell_space import CellSpace, Genotype
from metanas.searchers.darts.ops import make_op, norm_layer


FEATURE_GRID = 4


@dataclass(frozen=True)
class Speed:
    channels_last: bool = True
    shared_relu: bool = True


class MixedOp(nn.Module):
    def __init__(self, ops: Sequence[str], c: int, norm: str, shared_relu: bool = True) -> None:
        super().__init__()
        self.ops = nn.ModuleList(make_op(o, c, norm) for o in ops)
        # 'none' contributes exactly zero; skipping it saves work without changing the sum.
        self.active = [i for i, o in enumerate(ops) if o != "none"]
        self.shared_relu = shared_relu

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        relu = None  # computed once for every op that starts with one
        total = 0
        for i in self.active:
            op = self.ops[i]
            if self.shared_relu and hasattr(op, "after_relu"):
                relu = F.relu(x) if relu is None else relu
                out = op.after_relu(relu)
            else:
                out = op(x)
            total = total + weights[i] * out
        return total


class Cell(nn.Module):
    def __init__(self, space: CellSpace, edge_module: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.space = space
        self.edges = nn.ModuleList(edge_module(k) for k in range(len(space.edges)))
        c = space.channels
        self.combine = nn.Sequential(nn.ReLU(), nn.Conv2d(c * space.nodes, c, 1, bias=False), norm_layer(space.norm, c, affine=True))

    def forward(self, x: torch.Tensor, edge_weights: torch.Tensor | None = None) -> torch.Tensor:
        states = [x]
        k = 0
        for node in range(self.space.nodes):
            total = 0
            for source in range(node + 1):
                edge = self.edges[k]
                out = edge(states[source]) if edge_weights is None else edge(states[source], edge_weights[k])
                total = total + out
                k += 1
            states.append(total)
        return self.combine(torch.cat(states[1:], dim=1))


class _Network(nn.Module):
    def __init__(
        self, space: CellSpace, in_channels: int, n_classes: int, edge_module: Callable[[int], nn.Module], speed: Speed
    ) -> None:
        super().__init__()
        self.space = space
        self.speed = speed
        c = space.channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), norm_layer(space.norm, c, affine=True))
        self.cells = nn.ModuleList(Cell(space, edge_module) for _ in range(space.cells))
        self.classifier = nn.Linear(c * FEATURE_GRID**2, n_classes)
        if speed.channels_last:  # (moving to a device later keeps the layout)
            self.to(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.speed.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.stem(x)
        weights = self.edge_weights()
        for i, cell in enumerate(self.cells):
            h = cell(h, weights)
            if i < len(self.cells) - 1 and min(h.shape[-2:]) >= 2:
                h = F.max_pool2d(h, 2)
        return F.adaptive_avg_pool2d(h, FEATURE_GRID).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def edge_weights(self) -> torch.Tensor | None:
        return None


class Supernet(_Network):
    """Continuous relaxation: edge k computes sum_o softmax(alpha[k])_o * op_o(x)."""

    def __init__(self, space: CellSpace, in_channels: int, n_classes: int, speed: Speed = Speed()) -> None:
        super().__init__(
            space, in_channels, n_classes, lambda k: MixedOp(space.ops, space.channels, space.norm, speed.shared_relu), speed
        )
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(space.edges), len(space.ops)))

    def edge_weights(self) -> torch.Tensor:
        return F.softmax(self.alpha, dim=-1)

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n != "alpha"]

    def genotype(self) -> Genotype:
        return self.space.derive_genotype(self.alpha.detach())


class DiscreteNet(_Network):
    """The network of one genotype: each edge runs the single op the genotype names."""

    def __init__(self, space: CellSpace, genotype: Genotype, in_channels: int, n_classes: int, speed: Speed = Speed()) -> None:
        space.genotype_to_config(genotype)  # validates length and op names
        super().__init__(space, in_channels, n_classes, lambda k: make_op(genotype[k], space.channels, space.norm), speed)
        self.genotype_ops = tuple(genotype)

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def genotype(self) -> Genotype:
        return self.genotype_ops
