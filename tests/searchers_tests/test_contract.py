"""One contract, every searcher (optuna's testing-mixin idea): what `search` promises."""

from __future__ import annotations

import json

import pytest

from metanas.platform.space import Categorical, Float, Int, SearchSpace
from metanas.searchers.base import WarmStart
from metanas.searchers.optuna_search import OptunaSearcher
from metanas.searchers.random_search import RandomSearcher
from metanas.searchers.tune_search import TuneSearcher

SPACE = SearchSpace((Float("x", -5.0, 5.0), Int("n", 1, 10), Categorical("c", ("a", "b", "c"))), name="toy")
BEST = {"x": 1.0, "n": 3, "c": "b"}


def score(config):
    return -((config["x"] - 1.0) ** 2) - abs(config["n"] - 3) + (1.0 if config["c"] == "b" else 0.0)


class CountingObjective:
    """Logs every call to a file: Tune evaluates in other processes, so memory won't do."""

    def __init__(self, path):
        self.path = str(path)

    def __call__(self, config):
        with open(self.path, "a") as f:
            f.write(json.dumps(config) + "\n")
        return score(config)

    @property
    def calls(self):
        try:
            with open(self.path) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []


def _make(kind: str):
    if kind == "tune":
        return TuneSearcher(seed=0, max_concurrent=2)
    return {"random": RandomSearcher, "optuna": OptunaSearcher}[kind](seed=0)


@pytest.fixture(params=["random", "optuna", pytest.param("tune", marks=[pytest.mark.ray, pytest.mark.timeout(300)])])
def searcher(request):
    if request.param == "tune":
        request.getfixturevalue("ray_session")
    return _make(request.param)


def test_evaluates_exactly_budget_valid_configs(searcher, tmp_path):
    objective = CountingObjective(tmp_path / "calls.jsonl")
    result = searcher.search(objective, SPACE, budget=8)
    assert len(objective.calls) == 8 and len(result.evaluated) == 8
    for t in result.trials:
        assert SPACE.validate(t.config) == t.config
        assert t.score == pytest.approx(score(t.config))
    assert result.best.score == max(t.score for t in result.trials)
    curve = result.best_so_far()
    assert len(curve) == 8 and all(a <= b for a, b in zip(curve, curve[1:]))


def test_warm_start_is_evaluated_first_known_scores_are_free_and_misfits_dropped(searcher, tmp_path):
    objective = CountingObjective(tmp_path / "calls.jsonl")
    known = {"x": 0.0, "n": 3, "c": "b"}
    warm = [WarmStart(BEST), {"x": 99.0, "n": 3, "c": "b"}, {"x": 0.5, "n": 2, "c": "a"}, WarmStart(known, score=score(known))]
    result = searcher.search(objective, SPACE, budget=6, warm_start=warm)
    assert len(objective.calls) == 6  # the known score cost nothing
    assert known not in objective.calls
    assert result.warm_start_dropped == 1  # x=99 is outside the space
    assert {tuple(sorted(c.items())) for c in objective.calls[:2]} == {
        tuple(sorted(BEST.items())),
        (("c", "a"), ("n", 2), ("x", 0.5)),
    }
    assert result.best.config == BEST
    assert [t.source for t in result.trials].count("known") == 1


def test_bad_arguments_fail_clearly(searcher):
    with pytest.raises(ValueError, match="budget"):
        searcher.search(score, SPACE, budget=0)
    with pytest.raises(TypeError, match="callable"):
        searcher.search("not a function", SPACE, budget=2)


def test_optuna_prunes_with_a_budgeted_objective():
    calls = []

    def objective(config, budget):
        calls.append(budget)
        return score(config) * budget

    result = OptunaSearcher(seed=0, fidelities=[1, 3, 9]).search(objective, SPACE, budget=20)
    assert len(result.evaluated) == 20
    # successive halving stops most configs before the top fidelity
    assert calls.count(9) < 20 and calls.count(1) == 20
