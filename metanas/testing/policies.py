"""What every warm-start policy promises (see `metanas.memory.policies.base.WarmStartPolicy`).

Subclass `PolicyContract` and implement `make_policy()`; the suite plans searches of a
small space from a memory of a few stored tasks (and from none), as `metanas.search`,
`MemorySampler` and the benchmarks call the policy."""

from __future__ import annotations

import math
from typing import Any

import optuna

from metanas.memory.memory_model import MemoryModel
from metanas.memory.policies.base import Start, WarmStartPlan, WarmStartPolicy
from metanas.memory.records import PastTask
from metanas.searchers.random_search import RandomSearcher
from metanas.testing.searchers import SPACE, toy_score


def _metrics(config: dict[str, Any]) -> dict[str, float]:
    score = toy_score(config)
    return {"acc": score, "ms": float(config["n"])}


def stored_tasks(n: int = 3, trials: int = 20) -> list[PastTask]:
    """`n` stored searches of `SPACE` (random, so they differ), every trial with metrics."""
    out = []
    for i in range(n):
        evaluated = RandomSearcher(seed=i).search(toy_score, SPACE, trials).evaluated
        out.append(PastTask(f"t{i}", [{**t.to_dict(), "metrics": _metrics(t.config)} for t in evaluated]))
    return out


class PolicyContract:
    """Subclass and implement `make_policy()`."""

    budget = 20

    def make_policy(self) -> WarmStartPolicy:
        raise NotImplementedError

    def start(self, past: list[PastTask], seed: int = 0, told=()) -> Start:
        policy = self.make_policy()
        model = MemoryModel(SPACE, past, seed) if past and not policy.multi_objective else None
        objectives = {"acc": "max", "ms": "min"} if policy.multi_objective else None
        return Start(SPACE, past, model, toy_score, self.budget, list(told), seed=seed, objectives=objectives)

    def test_it_has_a_name_and_says_what_it_needs(self):
        policy = self.make_policy()
        assert isinstance(policy, WarmStartPolicy) and policy.name and policy.name.isidentifier()
        assert isinstance(policy.neighbours(5), int) and policy.neighbours(5) >= 1
        assert not (policy.needs_sampler and not policy.uses_memory)

    def test_a_plan_fits_the_space_and_leaves_the_search_room(self):
        plan = self.make_policy().plan(self.start(stored_tasks()))
        assert isinstance(plan, WarmStartPlan)
        for ws in plan.warm_start:
            assert SPACE.validate(ws.config) == ws.config
        assert all(ws.score is not None and math.isfinite(ws.score) for ws in plan.told)  # evaluated here
        assert len(plan.told) <= self.budget - 1  # at least one evaluation is the searcher's
        assert all(0.0 <= w <= 1.0 for w in plan.similarity.values())
        assert not plan.origins or len(plan.origins) == len(plan.queued)

    def test_what_it_was_told_stays_told(self):
        told = [type(ws)(ws.config, toy_score(ws.config)) for ws in self._some_configs()]
        plan = self.make_policy().plan(self.start(stored_tasks(), told=told))
        assert plan.told[: len(told)] == told

    def test_an_empty_memory_plans_a_cold_start(self):
        plan = self.make_policy().plan(self.start([]))
        assert plan.queued == [] and plan.told == []

    def test_the_same_seed_plans_the_same(self):
        first = self.make_policy().plan(self.start(stored_tasks(), seed=3))
        again = self.make_policy().plan(self.start(stored_tasks(), seed=3))
        assert [ws.config for ws in first.warm_start] == [ws.config for ws in again.warm_start]

    def test_its_sampler_is_optunas_or_none(self):
        policy = self.make_policy()
        sampler = policy.sampler(self.start(stored_tasks()))
        assert (sampler is not None) == policy.needs_sampler
        if sampler is not None:
            assert isinstance(sampler, optuna.samplers.BaseSampler)

    def _some_configs(self):
        from metanas.searchers.base import WarmStart

        return [WarmStart(t.config) for t in RandomSearcher(seed=99).search(toy_score, SPACE, 2).evaluated]
