"""One contract, every searcher: each implementation runs `metanas.testing.SearcherContract`."""

from __future__ import annotations

import pytest

from metanas.searchers.optuna_search import OptunaSearcher
from metanas.searchers.random_search import RandomSearcher
from metanas.testing import SearcherContract
from metanas.testing.searchers import SPACE, toy_score


class TestRandomSearcher(SearcherContract):
    def make_searcher(self, seed, fidelities=None):
        return RandomSearcher(seed=seed, fidelities=fidelities)


class TestOptunaTPE(SearcherContract):
    def make_searcher(self, seed, fidelities=None):
        return OptunaSearcher(seed=seed, fidelities=fidelities)


class TestOptunaCmaEs(SearcherContract):
    def make_searcher(self, seed, fidelities=None):
        return OptunaSearcher(seed=seed, sampler="cmaes", fidelities=fidelities)


def test_optuna_prunes_with_a_budgeted_objective():
    calls = []

    def objective(config, budget):
        calls.append(budget)
        return toy_score(config) * budget

    result = OptunaSearcher(seed=0, fidelities=[1, 3, 9]).search(objective, SPACE, budget=20)
    assert len(result.evaluated) == 20
    # successive halving stops most configs before the top fidelity
    assert calls.count(9) < 20 and calls.count(1) == 20


def test_an_unknown_optuna_sampler_is_refused():
    with pytest.raises(ValueError, match="sampler"):
        OptunaSearcher(sampler="grid")
