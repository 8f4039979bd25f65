"""The warm-start policies as objects of one interface (issue 28): each plans a search's first
evaluations and gives the sampler that continues it, and nothing else in the package reads a
policy's name to decide what to do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from metanas.memory import policies
from metanas.memory.memory_model import MemoryModel
from metanas.memory.records import PastTask
from metanas.memory.sampler import MemorySampler
from metanas.searchers.random_search import RandomSearcher
from metanas.testing import PolicyContract
from metanas.testing.searchers import SPACE, toy_score

PAST = [
    PastTask(f"t{i}", [t.to_dict() for t in RandomSearcher(seed=i).search(toy_score, SPACE, 20).evaluated])
    for i in range(3)
]
PACKAGE = Path(__file__).resolve().parents[2] / "metanas"


def test_every_policy_is_one_object_of_the_interface():
    assert set(policies.POLICIES) == {"model", "memory", "portfolio", "pareto", "none"}
    for name, policy in policies.POLICIES.items():
        assert isinstance(policy, policies.WarmStartPolicy) and policy.name == name
        assert (PACKAGE / "memory" / "policies" / f"{name}.py").is_file()  # one module each


def test_each_plans_and_hands_over_as_it_says():
    model = MemoryModel(SPACE, PAST, 0)
    start = policies.Start(SPACE, PAST, model, objective=toy_score, budget=20, seed=0)
    assert not policies.get("none").plan(start).warm_start and policies.get("none").sampler(start) is None
    queued = policies.get("portfolio").plan(start).queued
    assert len(queued) == 5 and all(SPACE.validate(ws.config) == ws.config for ws in queued)
    plan = policies.get("memory").plan(start)
    assert len(plan.told) == 5 and all(ws.score is not None for ws in plan.told)  # probes, evaluated
    assert set(plan.similarity) == {"t0", "t1", "t2"}
    sampler = policies.get("model").sampler(start)
    assert (
        isinstance(sampler, MemorySampler)
        and sampler.model is model
        and not policies.get("model").plan(start).warm_start
    )
    assert policies.get("model").needs_sampler and not policies.get("memory").needs_sampler


def test_the_pareto_policy_plans_from_stored_fronts():
    trials = [
        {"config": {"x": float(x), "n": 3, "c": "a"}, "score": -x, "metrics": {"acc": -x, "ms": x}}
        for x in range(-3, 4)
    ]
    start = policies.Start(SPACE, [PastTask("mo", trials)], objectives={"acc": "max", "ms": "min"})
    plan = policies.get("pareto", multi_objective=True).plan(start)
    assert plan.queued and plan.origins == ["mo"] * len(plan.queued)


@pytest.mark.parametrize(
    "name, multi, message",
    [
        ("pareto", False, "expected one of ('model', 'memory', 'portfolio', 'none'), got 'pareto'"),
        ("memory", True, "a multi-objective search takes one of ('pareto', 'none'), got 'memory'"),
        ("best", False, "got 'best'"),
    ],
)
def test_an_unknown_or_unfit_policy_is_one_line(name, multi, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        policies.get(name, multi_objective=multi)


def test_no_module_reads_a_policy_by_its_name():
    """Today's rule: the objects decide; a comparison of a policy's name to a string outside
    the registry is the interpretation in nine places the issue found, coming back."""
    names = "|".join(policies.POLICIES)
    pattern = re.compile(rf"\b(warm_start|policy)\s*(==|!=|not in|in)\s*\(?[\"']({names})[\"']")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in PACKAGE.rglob("*.py")
        if "policies" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders


class TestModelPolicy(PolicyContract):
    def make_policy(self):
        return policies.get("model")


class TestMemoryPolicy(PolicyContract):
    def make_policy(self):
        return policies.get("memory")


class TestPortfolioPolicy(PolicyContract):
    def make_policy(self):
        return policies.get("portfolio")


class TestParetoPolicy(PolicyContract):
    def make_policy(self):
        return policies.get("pareto", multi_objective=True)


class TestNoPolicy(PolicyContract):
    def make_policy(self):
        return policies.get("none")
