"""The DARTS cell search space: a cell is a small DAG whose every edge picks one operation.

A genotype (one op name per edge, shared by all cells, as in DARTS' normal cell) is an
ordinary config of a :class:`SearchSpace` with one categorical per edge, so a genotype found
by gradient search can be stored, retrieved and warm-started like any other config.
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

Genotype = tuple[str, ...]  # one op name per edge, in `CellSpace.edges` order


@dataclass(frozen=True)
class CellSpace:
    """Structure of the searched network: `cells` cells of `nodes` intermediate nodes each.

    Node i (0-based) takes an edge from the cell input and from every earlier node, so a
    cell has nodes*(nodes+1)/2 edges.
    """

    # The defaults are also the campaign file's (`space:` in a campaign YAML).
    nodes: int = 2
    ops: tuple[str, ...] = ALL_OPS
    channels: int = 16
    cells: int = 2
    norm: str = "group"  # how every op normalises: not searched, so not in the signature

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

    @property
    def edges(self) -> list[tuple[int, int]]:
        """(node, input) pairs; input 0 is the cell input, input j>0 is node j-1."""
        return [(i, j) for i in range(self.nodes) for j in range(i + 1)]

    @staticmethod
    def edge_name(node: int, source: int) -> str:
        return f"edge_n{node}_s{source}"

    @property
    def search_space(self) -> SearchSpace:
        params = tuple(Categorical(self.edge_name(i, j), self.ops) for i, j in self.edges)
        return SearchSpace(params, name=f"darts_cell_n{self.nodes}")

    def genotype_to_config(self, genotype: Genotype) -> dict[str, Any]:
        if len(genotype) != len(self.edges):
            raise ValueError(f"genotype has {len(genotype)} ops, the cell has {len(self.edges)} edges")
        config = {self.edge_name(i, j): op for (i, j), op in zip(self.edges, genotype)}
        return self.search_space.validate(config)

    def config_to_genotype(self, config: dict[str, Any]) -> Genotype:
        config = self.search_space.validate(config)
        return tuple(config[self.edge_name(i, j)] for i, j in self.edges)

    def derive_genotype(self, alpha: Any) -> Genotype:
        """Strongest op per edge from `alpha` (edges x ops). 'none' is never picked, as in
        DARTS, because its weight says 'less of every op' rather than 'this op is best'."""
        rows = alpha.tolist() if hasattr(alpha, "tolist") else alpha
        if len(rows) != len(self.edges) or any(len(r) != len(self.ops) for r in rows):
            raise ValueError(f"alpha must be {len(self.edges)}x{len(self.ops)}")
        genotype = []
        for row in rows:
            candidates = [(w, op) for w, op in zip(row, self.ops) if op != "none"]
            genotype.append(max(candidates)[1])
        return tuple(genotype)

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "ops": list(self.ops), "channels": self.channels, "cells": self.cells, "norm": self.norm}
