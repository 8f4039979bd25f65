"""Warm-start policies: which configs a new task's search evaluates first, and which sampler
continues it. One object per policy, one module each (`base` holds the interface):

- `model` (the default): the memory's model proposes each early evaluation (a sampler);
- `memory`: probe with the portfolio, weight stored tasks by how they rank the probes,
  queue their weighted trials (or, by embedding, the nearest tasks' portfolio);
- `portfolio`: the memory's portfolio, ignoring similarity (a baseline);
- `pareto`: a multi-objective search's stored Pareto sets;
- `none`: a cold search.
"""

from __future__ import annotations

from metanas.memory.policies.base import Start, WarmStartPlan, WarmStartPolicy
from metanas.memory.policies.memory import MemoryWarmStart
from metanas.memory.policies.model import ModelWarmStart
from metanas.memory.policies.none import NoWarmStart
from metanas.memory.policies.pareto import ParetoWarmStart
from metanas.memory.policies.portfolio import PortfolioWarmStart

POLICIES: dict[str, WarmStartPolicy] = {
    p.name: p
    for p in (ModelWarmStart(), MemoryWarmStart(), PortfolioWarmStart(), ParetoWarmStart(), NoWarmStart())
}
DEFAULT = "model"  # what `metanas bench warmstart` measures best across its tables
MULTI_OBJECTIVE_DEFAULT = "pareto"
SINGLE_OBJECTIVE = tuple(n for n, p in POLICIES.items() if not p.multi_objective or not p.uses_memory)
MULTI_OBJECTIVE = tuple(n for n, p in POLICIES.items() if p.multi_objective or not p.uses_memory)


def get(name: str, multi_objective: bool = False) -> WarmStartPolicy:
    """The policy of this name, for a single- or a multi-objective search; a one-line
    ValueError naming the choices otherwise."""
    choices = MULTI_OBJECTIVE if multi_objective else SINGLE_OBJECTIVE
    if name not in choices:
        kind = "a multi-objective search takes" if multi_objective else "expected"
        raise ValueError(f"warm_start: {kind} one of {choices}, got {name!r}")
    return POLICIES[name]


__all__ = [
    "POLICIES",
    "DEFAULT",
    "MULTI_OBJECTIVE_DEFAULT",
    "Start",
    "WarmStartPlan",
    "WarmStartPolicy",
    "get",
]
