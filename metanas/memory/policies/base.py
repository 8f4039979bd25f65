"""The one interface every warm-start policy implements: plan a search's first evaluations,
and give the Optuna sampler that continues it (or none: the searcher's own). `metanas.search`,
`MemorySampler`, the Ray Tune searcher (through the sampler) and the benchmarks all go
through these objects; `metanas.memory.policies.get` names them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metanas.memory.memory_model import MODEL_TASKS, MemoryModel
from metanas.memory.records import PastTask
from metanas.searchers.base import WarmStart
from metanas.searchers.space import SearchSpace


@dataclass
class WarmStartPlan:
    """What a search starts from. `told` were evaluated on this task already (probes: they
    count in its budget and are told to the searcher with their scores); `queued` are
    evaluated first, best first (`origins`: the stored task each came from, where known)."""

    told: list[WarmStart] = field(default_factory=list)
    queued: list[WarmStart] = field(default_factory=list)
    dropped: int = 0  # proposed configs that did not fit the space
    similarity: dict[str, float] = field(default_factory=dict)  # stored task -> weight in [0, 1]
    origins: list[str] = field(default_factory=list)

    @property
    def warm_start(self) -> list[WarmStart]:
        return self.told + self.queued


@dataclass
class Start:
    """What a policy knows when a search starts."""

    space: SearchSpace
    past: Sequence[PastTask] = ()  # the stored tasks it learns from (with their similarity, by embedding)
    model: MemoryModel | None = None  # the memory's model of them
    objective: Callable[[dict[str, Any]], Any] | None = None  # to probe the task with (black box)
    budget: int | None = None
    told: Sequence[WarmStart] = ()  # evaluations this task already paid for (e.g. landmark probes)
    by_embedding: bool = False  # `past` are the task's nearest by embedding
    n_warm: int = 5
    seed: int = 0
    objectives: Mapping[str, str] | None = None  # a multi-objective search's (name -> 'max' or 'min')
    constraints: Mapping[str, float] | None = None


class WarmStartPolicy:
    name = ""
    multi_objective = False  # for multi-objective searches (the others are for single-objective ones)
    uses_memory = True  # reads the stored tasks at all
    needs_sampler = False  # chooses evaluations through an Optuna sampler (Optuna or Ray Tune searchers)

    def neighbours(self, k: int) -> int:
        """How many stored tasks, nearest by embedding, it learns from (given the user's k)."""
        return MODEL_TASKS

    def plan(self, start: Start) -> WarmStartPlan:
        """The first evaluations: probes told and configs queued."""
        return WarmStartPlan(told=list(start.told))

    def sampler(self, start: Start) -> Any:
        """The Optuna sampler that continues the search; None: the searcher's own."""
        return None

    def __repr__(self) -> str:
        return f"<warm-start policy {self.name!r}>"
