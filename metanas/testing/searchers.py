"""What every `Searcher` promises (see `metanas.searchers.base.Searcher`)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pytest

from metanas.searchers.base import WarmStart
from metanas.searchers.space import Categorical, Float, Int, SearchSpace, config_key

SPACE = SearchSpace((Float("x", -5.0, 5.0), Int("n", 1, 10), Categorical("c", ("a", "b", "c"))), name="toy")
BEST = {"x": 1.0, "n": 3, "c": "b"}


def toy_score(config: dict[str, Any]) -> float:
    return -((config["x"] - 1.0) ** 2) - abs(config["n"] - 3) + (1.0 if config["c"] == "b" else 0.0)


class CountingObjective:
    """Logs every call to a file, since a searcher may evaluate in other processes (Ray Tune)."""

    def __init__(self, path: Any, fail: bool = False, with_budget: bool = False) -> None:
        self.path = str(path)
        self.fail = fail
        self.with_budget = with_budget

    def _log(self, config: dict[str, Any], budget: Any) -> float:
        with open(self.path, "a") as f:
            f.write(json.dumps({"config": config, "budget": budget}) + "\n")
        return math.nan if self.fail else toy_score(config) * (1.0 if budget is None else float(budget))

    def calls(self) -> list[dict[str, Any]]:
        try:
            with open(self.path) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []


class _Plain(CountingObjective):
    def __call__(self, config: dict[str, Any]) -> float:
        return self._log(config, None)


class _Budgeted(CountingObjective):
    def __call__(self, config: dict[str, Any], budget: float) -> float:
        return self._log(config, budget)


class SearcherContract:
    """Subclass and implement `make_searcher`. Set `deterministic_order = False` for a
    searcher that evaluates in parallel (the same configs, possibly in another order)."""

    deterministic_order = True

    def make_searcher(self, seed: int, fidelities: Sequence[float] | None = None) -> Any:
        raise NotImplementedError

    def test_evaluates_exactly_budget_valid_configs(self, tmp_path):
        objective = _Plain(tmp_path / "calls.jsonl")
        result = self.make_searcher(0).search(objective, SPACE, budget=8)
        assert len(objective.calls()) == 8 and len(result.evaluated) == 8
        for t in result.trials:
            assert SPACE.validate(t.config) == t.config
            assert t.score == pytest.approx(toy_score(t.config))
        assert result.best.score == max(t.score for t in result.trials)
        curve = result.best_so_far()
        assert len(curve) == 8 and all(a <= b for a, b in zip(curve, curve[1:]))

    def test_warm_starts_go_first_known_scores_are_told_free_and_misfits_dropped(self, tmp_path):
        objective = _Plain(tmp_path / "calls.jsonl")
        known = {"x": 0.0, "n": 3, "c": "b"}
        other = {"x": 0.5, "n": 2, "c": "a"}
        warm = [
            WarmStart(BEST),
            {"x": 99.0, "n": 3, "c": "b"},
            other,
            WarmStart(known, score=toy_score(known)),
        ]
        result = self.make_searcher(0).search(objective, SPACE, budget=6, warm_start=warm)
        calls = [c["config"] for c in objective.calls()]
        assert len(calls) == 6 and known not in calls  # the known score cost nothing
        assert result.warm_start_dropped == 1  # x=99 is outside the space
        assert {config_key(c) for c in calls[:2]} == {config_key(BEST), config_key(other)}
        assert result.best.config == BEST
        assert [t.source for t in result.trials].count("known") == 1

    def test_the_same_seed_evaluates_the_same_configs(self, tmp_path):
        runs = []
        for i in range(2):
            objective = _Plain(tmp_path / f"calls{i}.jsonl")
            self.make_searcher(7).search(objective, SPACE, budget=5)
            runs.append([config_key(c["config"]) for c in objective.calls()])
        if not self.deterministic_order:
            runs = [sorted(r) for r in runs]
        assert runs[0] == runs[1]

    def test_an_objective_that_always_fails_has_no_best(self, tmp_path):
        objective = _Plain(tmp_path / "calls.jsonl", fail=True)
        result = self.make_searcher(0).search(objective, SPACE, budget=4)
        assert len(result.evaluated) == 4 and all(t.score == -math.inf for t in result.evaluated)
        with pytest.raises(ValueError, match="failed"):
            _ = result.best

    def test_a_budgeted_objective_runs_at_the_searchers_fidelities(self, tmp_path):
        objective = _Budgeted(tmp_path / "calls.jsonl")
        result = self.make_searcher(0, fidelities=[1, 3, 9]).search(objective, SPACE, budget=8)
        budgets = [c["budget"] for c in objective.calls()]
        assert set(budgets) <= {1, 3, 9} and 9 in budgets
        assert len(result.evaluated) == 8  # a config stopped early still counts once
        assert all(t.budget in (1, 3, 9) for t in result.evaluated)

    def test_bad_arguments_fail_clearly(self):
        searcher = self.make_searcher(0)
        with pytest.raises(ValueError, match="budget"):
            searcher.search(toy_score, SPACE, budget=0)
        with pytest.raises(TypeError, match="callable"):
            searcher.search("not a function", SPACE, budget=2)
