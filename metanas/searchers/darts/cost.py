"""What an architecture costs: a cost that is a sum over the genotype's edge ops plus a
constant, its expectation under the supernet's softmax (for the loss), and the cheapest
projection of `alpha` onto a genotype within a limit.

Parameters are exactly such a sum: every op's weights, at every place the genotype puts it,
plus the stem, cell combines and head (the same in every genotype of a space). Latency is
close to one (ProxylessNAS, FBNet, HELP): `latency.py` measures each op where it occurs and
`latency_fit.py` calibrates the sum on measured whole networks.

A slot is one genotype entry: edge k of the normal cell, then of the reduction cell. Each
slot stands for that edge in every cell of its kind, so a slot's cost sums over those cells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from metanas.searchers.darts.cell_space import CellSpace, Genotype
from metanas.searchers.darts.ops import make_op
from metanas.searchers.darts.supernet import DiscreteNet, Supernet


@dataclass(frozen=True)
class EdgeSite:
    """One place an edge's op runs: its slot, the cell it is in, its input shape, stride."""

    slot: int
    cell: int
    channels: int
    height: int
    width: int
    stride: int


def edge_sites(space: CellSpace, image_size: tuple[int, int], in_channels: int = 1) -> list[EdgeSite]:
    """Every edge of every cell of the network a genotype of `space` builds, with the input
    shape the edge sees (found by running a supernet once, so it follows the network's own
    pooling and reduction rules)."""
    space = replace(space, partial_channels=1)  # a derived network runs every op on all channels
    net = Supernet(space, in_channels, 2)
    n_edges = len(space.edges)
    sites: list[EdgeSite] = []

    def recorder(cell: int, edge: int, slot: int, stride: int):
        def hook(_module, args):
            _, c, h, w = args[0].shape
            sites.append(EdgeSite(slot, cell, c, h, w, stride))

        return hook

    handles = [
        mixed.register_forward_pre_hook(recorder(i, k, k + n_edges * cell.reduction, mixed.stride))
        for i, cell in enumerate(net.cells)
        for k, mixed in enumerate(cell.edges)
    ]
    try:
        with torch.no_grad():
            net(torch.zeros(1, in_channels, *image_size))
    finally:
        for h in handles:
            h.remove()
    return sites


@dataclass(frozen=True)
class LinearCost:
    """cost(genotype) = constant + sum over slots of per_slot[slot, op]. `ops` names the
    columns (the space's ops)."""

    name: str  # what it measures, with its unit: "latency_ms", "params"
    ops: tuple[str, ...]
    per_slot: np.ndarray  # slots x ops
    constant: float

    def of(self, genotype: Sequence[str]) -> float:
        if len(genotype) != len(self.per_slot):
            raise ValueError(f"genotype has {len(genotype)} ops, the cost has {len(self.per_slot)} slots")
        return self.constant + float(
            sum(self.per_slot[s, self.ops.index(op)] for s, op in enumerate(genotype))
        )

    def expected(self, model: Supernet) -> torch.Tensor:
        """The cost's expectation when each slot's op is drawn from the supernet's edge
        weights (ProxylessNAS' and FBNet's differentiable cost)."""
        weights = torch.cat([model.mix(a) for a in model.alphas()])
        table = torch.as_tensor(self.per_slot, dtype=weights.dtype, device=weights.device)
        return self.constant + (weights * table).sum()

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "ops": list(self.ops),
            "per_slot": self.per_slot.tolist(),
            "constant": self.constant,
        }

    @classmethod
    def from_dict(cls, d: dict) -> LinearCost:
        return cls(
            d["name"], tuple(d["ops"]), np.asarray(d["per_slot"], dtype=np.float64), float(d["constant"])
        )


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def params_cost(
    space: CellSpace, image_size: tuple[int, int], in_channels: int = 1, n_classes: int = 5
) -> LinearCost:
    """The exact parameter count of a genotype's network for `n_classes`, head included."""
    space = replace(space, partial_channels=1)
    n_slots = len(space.edge_names)
    per_slot = np.zeros((n_slots, len(space.ops)))
    for site in edge_sites(space, image_size, in_channels):
        for o, op in enumerate(space.ops):
            per_slot[site.slot, o] += count_params(make_op(op, site.channels, space.norm, site.stride))
    probe = tuple(next(op for op in space.ops if op != "none") for _ in range(n_slots))
    total = count_params(DiscreteNet(space, probe, in_channels, n_classes))
    cost = LinearCost("params", space.ops, per_slot, 0.0)
    return replace(cost, constant=total - cost.of(probe))


@dataclass(frozen=True)
class CostLimit:
    """A limit on a linear cost; in the supernet loss, `weight` times the hinge
    max(0, expected / limit - 1), which is zero once the expectation is within the limit."""

    cost: LinearCost
    limit: float
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.limit > 0:
            raise ValueError(f"{self.cost.name}: the limit must be > 0, got {self.limit}")

    def penalty(self, model: Supernet) -> torch.Tensor:
        return self.weight * torch.relu(self.cost.expected(model) / self.limit - 1.0)

    def excess(self, genotype: Sequence[str]) -> float:
        """How far the genotype is over the limit, as a fraction of it (0 when within)."""
        return max(0.0, self.cost.of(genotype) / self.limit - 1.0)

    def to_dict(self) -> dict:
        return {"cost": self.cost.to_dict(), "limit": self.limit, "weight": self.weight}

    @classmethod
    def from_dict(cls, d: dict) -> CostLimit:
        return cls(LinearCost.from_dict(d["cost"]), float(d["limit"]), float(d["weight"]))


def cost_penalty(model: nn.Module, limits: Sequence[CostLimit]) -> torch.Tensor | float:
    """The sum of the limits' penalties for a supernet; 0 for a discrete network."""
    if not limits or not hasattr(model, "alphas"):
        return 0.0
    return sum(limit.penalty(model) for limit in limits)


def constrained_genotype(
    space: CellSpace, alphas: Sequence[torch.Tensor], limits: Sequence[CostLimit]
) -> Genotype:
    """The strongest op per slot (as `CellSpace.derive_genotype`), then, while the genotype
    is over a limit, the swap that gives up the least `alpha` per unit of excess removed.
    When no genotype of the space is within the limits, the one with the least excess."""
    genotype = list(space.derive_genotype(*alphas))
    if not limits:
        return tuple(genotype)
    logits = torch.cat([a.detach().float().cpu() for a in alphas]).numpy()
    allowed = [o for o, op in enumerate(space.ops) if op != "none"]

    def excess(g: Sequence[str]) -> float:
        return sum(limit.excess(g) for limit in limits)

    current = excess(genotype)
    while current > 0:
        best, best_ratio = None, math.inf
        for slot, op in enumerate(genotype):
            here = space.ops.index(op)
            for o in allowed:
                if o == here:
                    continue
                trial = genotype[:slot] + [space.ops[o]] + genotype[slot + 1 :]
                saved = current - excess(trial)
                if saved <= 0:
                    continue
                lost = logits[slot, here] - logits[slot, o]  # finite: pruned ops are never the argmax
                ratio = max(lost, 0.0) / saved if math.isfinite(lost) else math.inf
                if ratio < best_ratio or best is None:
                    best, best_ratio = trial, ratio
        if best is None:  # no single swap lowers the excess: as close as it gets
            break
        genotype, current = best, excess(best)
    return tuple(genotype)


def genotype_within(space: CellSpace, params: dict, limits: Sequence[CostLimit] = ()) -> Genotype:
    """The genotype a supernet's parameters (or just their 'alpha' entries) derive,
    projected within the limits (`CellSpace.genotype_of` when there are none)."""
    names = ["alpha", "alpha_reduce"] if space.reduction else ["alpha"]
    return constrained_genotype(space, [torch.as_tensor(params[n]) for n in names], limits)
