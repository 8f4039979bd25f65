"""The DARTS supernet (every edge a softmax-weighted mix of all ops) and the discrete
network built from a genotype (every edge one op). Both share one skeleton:

    stem conv -> [cell -> 2x2 max pool] * (cells - 1) -> cell -> 4x4 average pool -> linear

and with `reduction` the max pools become reduction cells (`cells.cell_kinds`). With
`input_cells` 2 each cell also reads the output of the cell before the previous one (the
first cell reads the stem twice), and a max pool between cells pools both.

The head keeps a coarse spatial grid (`space.feature_grid`, 4x4 by default) instead of
global average pooling: on small images (digits, rotated classes) where a stroke is
matters as much as what it is, and global pooling would make a digit and its rotation
look alike.

The architecture parameters `alpha` (edges x ops) are shared by all normal cells, and
`alpha_reduce` by all reduction cells; edge weights are softmax(alpha / temperature).

PC-DARTS' options (`CellSpace.partial_channels`, `edge_normalization`) change only the
supernet: a mixed edge runs its ops on 1/K of the channels (`cells.MixedOp`), and with
edge normalisation `beta` (and `beta_reduce`) scale each edge by softmax(beta) over the
edges into its node. They are architecture parameters too (`arch_parameters`), but the
genotype comes from `alphas()` alone: it keeps every edge.

Drop path (`space.drop_path`) acts only while `drop_path_active` is on and the network is
in training mode. The networks run in training mode at test time too (norms use per-sample
statistics), so the flag, not the mode, says "training": `adapt` turns it on, evaluation
and prediction turn it off.

Speed (`Speed`, on by default; `metanas bench step` measures it side by side): the
networks run channels-last, which oneDNN's convolutions and pools on CPU (and cuDNN on a
GPU) are fastest with; a mixed edge computes the ReLU its ops begin with once and sums its
ops in one autograd node (`cells._WeightedSum`); three ops run kernels of our own on the CPU
(`cpu_kernels`). None changes anything but float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metanas.searchers.darts.cell_space import CellSpace, Genotype
from metanas.searchers.darts.cells import Cell, EdgeModule, MixedOp, cell_kinds
from metanas.searchers.darts.ops import make_op, norm_layer

# reduction cell? -> (edge weights, which ops are live, or None when unknown)
EdgeWeights = dict[bool, tuple[torch.Tensor, list[list[bool]] | None]]
# reduction cell? -> one factor per edge (edge normalisation)
EdgeScales = dict[bool, torch.Tensor]


@dataclass(frozen=True)
class Speed:
    channels_last: bool = True
    shared_relu: bool = True
    own_cpu_kernels: bool = True  # cpu_kernels' ops
    fused_sum: bool = True  # a mixed edge's weighted sum in one autograd node


class _Network(nn.Module):
    def __init__(
        self, space: CellSpace, in_channels: int, n_classes: int, edge_module: EdgeModule, speed: Speed
    ) -> None:
        super().__init__()
        self.space = space
        self.speed = speed
        self.drop_path_active = False
        c = space.channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c, 3, padding=1, bias=False), norm_layer(space.norm, c, affine=True)
        )
        kinds = cell_kinds(space)
        self.cells = nn.ModuleList(
            Cell(space, edge_module, reduction, i > 0 and kinds[i - 1]) for i, reduction in enumerate(kinds)
        )
        self.classifier = nn.Linear(c * space.feature_grid**2, n_classes)
        if speed.channels_last:  # (moving to a device later keeps the layout)
            self.to(memory_format=torch.channels_last)
        for module in self.modules():
            if hasattr(module, "own_kernel"):
                module.own_kernel = speed.own_cpu_kernels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.speed.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        s0 = s1 = self.stem(x)
        weights = self.edge_weights()
        scales = self.edge_scales()
        drop = self.space.drop_path if self.training and self.drop_path_active else 0.0
        two_inputs = self.space.input_cells == 2
        for i, cell in enumerate(self.cells):
            w, live = weights[cell.reduction] if weights is not None else (None, None)
            s0, s1 = s1, cell(s0, s1, w, live, drop, scales[cell.reduction] if scales is not None else None)
            if not self.space.reduction and i < len(self.cells) - 1 and min(s1.shape[-2:]) >= 2:
                s1 = F.max_pool2d(s1, 2)
                s0 = F.max_pool2d(s0, 2) if two_inputs else s0  # the next cell reads both at one size
        return F.adaptive_avg_pool2d(s1, self.space.feature_grid).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def edge_weights(self) -> EdgeWeights | None:
        return None

    def edge_scales(self) -> EdgeScales | None:
        return None


class Supernet(_Network):
    """Continuous relaxation: edge k computes sum_o softmax(alpha[k] / temperature)_o * op_o(x)."""

    def __init__(self, space: CellSpace, in_channels: int, n_classes: int, speed: Speed = Speed()) -> None:
        def edge(k: int, reduction: bool, stride: int) -> nn.Module:
            return MixedOp(
                space.ops,
                space.channels,
                space.norm,
                speed.shared_relu,
                stride,
                space.partial_channels,
                speed.fused_sum,
            )

        super().__init__(space, in_channels, n_classes, edge, speed)
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(space.edges), len(space.ops)))
        if space.reduction:
            self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(len(space.edges), len(space.ops)))
        if space.edge_normalization:  # PC-DARTS: one weight per edge, softmaxed over each node's inputs
            self.beta = nn.Parameter(1e-3 * torch.randn(len(space.edges)))
            if space.reduction:
                self.beta_reduce = nn.Parameter(1e-3 * torch.randn(len(space.edges)))
        self.temperature = 1.0  # annealed by the caller (MetaSchedule.temperature)

    def alphas(self) -> list[nn.Parameter]:
        """The op weights: `alpha`, then `alpha_reduce` with reduction cells."""
        return [self.alpha, self.alpha_reduce] if self.space.reduction else [self.alpha]

    def betas(self) -> list[nn.Parameter]:
        """The edge weights of edge normalisation (`beta`, `beta_reduce`); none without it."""
        if not self.space.edge_normalization:
            return []
        return [self.beta, self.beta_reduce] if self.space.reduction else [self.beta]

    def arch_parameters(self) -> list[nn.Parameter]:
        return self.alphas() + self.betas()

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def mix(self, alpha: torch.Tensor) -> torch.Tensor:
        """Edge weights from architecture parameters: softmax(alpha / temperature)."""
        return F.softmax(alpha if self.temperature == 1.0 else alpha / self.temperature, dim=-1)

    def edge_weights(self) -> EdgeWeights:
        out = {}
        for reduction, alpha in zip((False, True), self.alphas()):
            w = self.mix(alpha)
            # Which ops have weight exactly 0 (pruned): read only on the CPU, where it is
            # free; on an accelerator it would stall the queue every pass, and there such
            # an op runs and adds exactly zero.
            live = (w > 0).tolist() if w.device.type == "cpu" else None
            out[reduction] = (w, live)
        return out

    def edge_scales(self) -> EdgeScales | None:
        """Edge normalisation: each edge's output times softmax(beta) over the edges into its
        node (no temperature: a derived cell sums every edge alike)."""
        if not self.space.edge_normalization:
            return None
        sizes = [self.space.input_cells + i for i in range(self.space.nodes)]  # edges are grouped by node
        return {
            reduction: torch.cat([F.softmax(b, dim=0) for b in beta.split(sizes)])
            for reduction, beta in zip((False, True), self.betas())
        }

    def genotype(self) -> Genotype:
        return self.space.derive_genotype(*(a.detach() for a in self.alphas()))


class DiscreteNet(_Network):
    """The network of one genotype: each edge runs the single op the genotype names."""

    def __init__(
        self, space: CellSpace, genotype: Genotype, in_channels: int, n_classes: int, speed: Speed = Speed()
    ) -> None:
        space.genotype_to_config(genotype)  # validates length and op names
        n = len(space.edges)

        def edge(k: int, reduction: bool, stride: int) -> nn.Module:
            return make_op(genotype[k + n * reduction], space.channels, space.norm, stride)

        super().__init__(space, in_channels, n_classes, edge, speed)
        self.genotype_ops = tuple(genotype)

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def genotype(self) -> Genotype:
        return self.genotype_ops
