"""The DARTS cell search space: a cell is a small DAG whose every edge picks one operation.

A genotype (one op name per edge, shared by all cells of a kind, as in DARTS) is an
ordinary config of a :class:`SearchSpace` with one categorical per edge, so a genotype found
by gradient search can be stored, retrieved and warm-started like any other config. With
reduction cells the genotype is the normal cell's ops, then the reduction cell's, as one
flat tuple.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metanas.searchers.space import Categorical, SearchSpace

# Order matters: it is the column order of the architecture parameters `alpha`.
ALL_OPS: tuple[str, ...] = (
    "none",
    "skip_connect",
    "conv_3x3",
    "sep_conv_3x3",
    "dil_conv_3x3",
    "max_pool_3x3",
    "avg_pool_3x3",
)

Genotype = tuple[str, ...]  # one op name per edge, in `CellSpace.edge_names` order


@dataclass(frozen=True)
class CellSpace:
    """Structure of the searched network: `cells` cells of `nodes` intermediate nodes each.

    A cell reads `input_cells` inputs: 1, the previous cell's output; 2, the outputs of the
    two previous cells (DARTS). Node i takes an edge from every cell input and every earlier
    node, so a cell has sum over i of (input_cells + i) edges.

    `reduction`: the 2x2 max pools between cells become reduction cells with their own
    architecture (stride-2 ops on the edges from the cell inputs), so the network has
    `cells` normal cells and `cells - 1` reduction cells.

    `drop_path`: DARTS' drop path probability, applied only where the network's
    `drop_path_active` flag is on (during adaptation).

    `partial_channels` K: PC-DARTS' partial channel connections. In the supernet only 1/K
    of the channels go through each mixed edge's ops, the rest bypass them, and the
    channels are shuffled; 1 is off. A derived genotype's network always uses every
    channel, so K changes the supernet's cost and parameters, not the genotypes: not in
    the signature.

    `feature_grid`: the last cell's output is average-pooled to a grid of this many cells
    a side before the linear head (1: global average pooling, translation invariant; 4
    keeps where a stroke is, which matters on small images such as digits).

    `edge_normalization`: PC-DARTS' edge normalisation. The supernet learns a weight per
    edge (`beta`, and `beta_reduce` with reduction cells), softmaxed over the edges into
    each node, that scales the edge's output. A genotype keeps every edge, so it does not
    change the genotypes either.
    """

    # The defaults are also the campaign file's (`space:` in a campaign YAML).
    nodes: int = 2
    ops: tuple[str, ...] = ALL_OPS
    channels: int = 16
    cells: int = 2
    norm: str = "group"  # how every op normalises: not searched, so not in the signature
    reduction: bool = False
    input_cells: int = 1
    drop_path: float = 0.0  # a training regulariser: not searched, so not in the signature
    partial_channels: int = 1  # PC-DARTS' K: how the supernet searches, so not in the signature
    edge_normalization: bool = False  # likewise
    feature_grid: int = 4  # the head's pooled grid (4: 4x4 cells); the skeleton's, not searched

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        unknown = [o for o in self.ops if o not in ALL_OPS]
        if unknown:
            raise ValueError(f"ops: unknown op names {unknown}; known ops are {list(ALL_OPS)}")
        if len(set(self.ops)) != len(self.ops):
            raise ValueError(f"ops: each op may appear once, got {list(self.ops)}")
        if not [o for o in self.ops if o != "none"]:
            raise ValueError("ops: need at least one op besides 'none'")
        if self.norm not in ("batch", "group"):
            raise ValueError(f"norm: expected 'batch' or 'group', got {self.norm!r}")
        for name in ("nodes", "channels", "cells"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.feature_grid < 1:
            raise ValueError(f"feature_grid: must be >= 1, got {self.feature_grid}")
        if self.input_cells not in (1, 2):
            raise ValueError(f"input_cells: expected 1 or 2, got {self.input_cells}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"drop_path: expected 0 <= drop_path < 1, got {self.drop_path}")
        if self.reduction and self.cells < 2:  # else alpha_reduce would exist and never act
            raise ValueError(
                f"cells: reduction cells sit between cells, so they need cells >= 2, got {self.cells}"
            )
        if self.reduction and self.channels < 2:  # the factorized reduce splits channels in two
            raise ValueError(f"channels: reduction cells need at least 2, got {self.channels}")
        k = self.partial_channels
        if k < 1 or self.channels % k:
            raise ValueError(f"partial_channels: must be >= 1 and divide channels ({self.channels}), got {k}")
        if self.reduction and self.channels // k < 2:  # the mixed part's factorized reduce, too
            raise ValueError(
                f"partial_channels: reduction cells need channels/K >= 2, got {self.channels}/{k}"
            )

    @property
    def edges(self) -> list[tuple[int, int]]:
        """(node, source) pairs of one cell. Sources 0 .. input_cells-1 are the cell inputs
        (with 2: 0 the older cell's output, 1 the previous one's); source input_cells + j is
        node j."""
        return [(i, j) for i in range(self.nodes) for j in range(self.input_cells + i)]

    @staticmethod
    def edge_name(node: int, source: int, reduce: bool = False) -> str:
        return f"{'reduce_' if reduce else ''}edge_n{node}_s{source}"

    @property
    def edge_names(self) -> list[str]:
        """One name per genotype entry: the normal cell's edges, then the reduction cell's."""
        kinds = (False, True) if self.reduction else (False,)
        return [self.edge_name(i, j, reduce) for reduce in kinds for i, j in self.edges]

    @property
    def search_space(self) -> SearchSpace:
        params = tuple(Categorical(name, self.ops) for name in self.edge_names)
        suffix = ("_in2" if self.input_cells == 2 else "") + ("_reduce" if self.reduction else "")
        return SearchSpace(params, name=f"darts_cell_n{self.nodes}{suffix}")

    def genotype_to_config(self, genotype: Genotype) -> dict[str, Any]:
        names = self.edge_names
        if len(genotype) != len(names):
            raise ValueError(f"genotype has {len(genotype)} ops, the space has {len(names)} edges")
        return self.search_space.validate(dict(zip(names, genotype)))

    def config_to_genotype(self, config: dict[str, Any]) -> Genotype:
        config = self.search_space.validate(config)
        return tuple(config[name] for name in self.edge_names)

    def derive_genotype(self, alpha: Any, alpha_reduce: Any = None) -> Genotype:
        """Strongest op per edge from `alpha` (edges x ops), then from `alpha_reduce` with
        reduction cells. 'none' is never picked, as in DARTS, because its weight says 'less
        of every op' rather than 'this op is best'."""
        if self.reduction != (alpha_reduce is not None):
            need = "both alpha and alpha_reduce" if self.reduction else "alpha only"
            raise ValueError(
                f"this space {'has' if self.reduction else 'has no'} reduction cells: pass {need}"
            )
        genotype = self._strongest(alpha)
        return genotype + self._strongest(alpha_reduce) if self.reduction else genotype

    def genotype_of(self, params: dict[str, Any]) -> Genotype:
        """The genotype a supernet's parameters (or just their 'alpha' entries) derive."""
        return self.derive_genotype(params["alpha"], params.get("alpha_reduce") if self.reduction else None)

    def _strongest(self, alpha: Any) -> Genotype:
        rows = alpha.tolist() if hasattr(alpha, "tolist") else alpha
        if len(rows) != len(self.edges) or any(len(r) != len(self.ops) for r in rows):
            raise ValueError(f"alpha must be {len(self.edges)}x{len(self.ops)}")
        genotype = []
        for row in rows:
            candidates = [(w, op) for w, op in zip(row, self.ops) if op != "none"]
            genotype.append(max(candidates)[1])
        return tuple(genotype)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "ops": list(self.ops),
            "channels": self.channels,
            "cells": self.cells,
            "norm": self.norm,
            "reduction": self.reduction,
            "input_cells": self.input_cells,
            "drop_path": self.drop_path,
            "partial_channels": self.partial_channels,
            "edge_normalization": self.edge_normalization,
            "feature_grid": self.feature_grid,
        }
