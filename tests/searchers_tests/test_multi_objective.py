"""Multi-objective search (real Optuna), hypervolume, and warm starts from stored fronts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metanas.memory.policies.pareto import pareto_warm_start, stored_front
from metanas.memory.records import PastTask
from metanas.searchers.base import SearchFailed
from metanas.searchers.multi_objective import MultiObjective, hypervolume, multi_objective_search
from metanas.searchers.pareto import dominates
from metanas.searchers.space import Float, SearchSpace

SPACE = SearchSpace((Float("x", 0.0, 1.0), Float("y", 0.0, 1.0)))
OBJECTIVES = {"acc": "max", "ms": "min"}


def trade_off(config):
    """Accuracy grows with x, latency with x and y: the front is y = 0."""
    return {"acc": config["x"] - 0.2 * config["y"], "ms": 1.0 + 4.0 * config["x"] + config["y"]}


def test_hypervolume_of_known_fronts():
    assert hypervolume([(1.0, 1.0)], (0.0, 0.0)) == pytest.approx(1.0)
    assert hypervolume([(2.0, 1.0), (1.0, 2.0), (0.5, 0.5)], (0.0, 0.0)) == pytest.approx(3.0)
    assert hypervolume([(1.0, 1.0, 1.0), (2.0, 0.5, 0.5)], (0.0, 0.0, 0.0)) == pytest.approx(1.25)
    assert hypervolume([(-1.0, 5.0)], (0.0, 0.0)) == 0.0  # not above the reference


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_the_front_is_exactly_the_non_dominated_feasible_trials(sampler):
    objective = MultiObjective(trade_off, OBJECTIVES, {"ms": 4.0})
    result = multi_objective_search(objective, SPACE, 25, sampler=sampler, seed=1)
    assert len(result.trials) == 25 and all(t.metrics is not None for t in result.trials)
    feasible = [t for t in result.trials if t.metrics["ms"] <= 4.0]
    front = result.pareto
    assert front and all(t in feasible for t in front)
    for t in feasible:
        on_front = not any(dominates(o.metrics, t.metrics, OBJECTIVES) for o in feasible)
        assert on_front == (t in front)
    assert result.best.metrics["acc"] == max(t.metrics["acc"] for t in feasible)
    assert all(t.score == -math.inf for t in result.trials if t.metrics["ms"] > 4.0)


def test_warm_starts_go_first_and_failed_metrics_are_failed_trials():
    calls = []

    def flaky(config):
        calls.append(config)
        return {"acc": math.nan, "ms": 1.0} if len(calls) == 2 else trade_off(config)

    warm = [{"x": 0.9, "y": 0.0}, {"x": 0.1, "y": 0.0}]
    result = multi_objective_search(MultiObjective(flaky, OBJECTIVES), SPACE, 6, warm_start=warm, seed=0)
    assert [t.config for t in result.trials[:2]] == warm and [t.source for t in result.trials[:2]] == [
        "warm_start"
    ] * 2
    assert result.trials[1].metrics is None and result.trials[1].score == -math.inf
    assert result.trials[1] not in result.pareto


def test_bad_objectives_and_results_are_one_clear_error():
    with pytest.raises(ValueError, match="at least two"):
        MultiObjective(trade_off, {"acc": "max"})
    with pytest.raises(ValueError, match="'max' or 'min'"):
        MultiObjective(trade_off, {"acc": "max", "ms": "down"})
    with pytest.raises(ValueError, match="not one of the objectives"):
        MultiObjective(trade_off, OBJECTIVES, {"size": 3.0})
    with pytest.raises(TypeError, match="no \\['ms'\\]"):
        MultiObjective(lambda c: {"acc": 1.0}, OBJECTIVES)({"x": 0.1, "y": 0.2})
    with pytest.raises(TypeError, match="must be a number"):
        MultiObjective(lambda c: {"acc": "0.5", "ms": 1.0}, OBJECTIVES)({"x": 0.1, "y": 0.2})
    impossible = MultiObjective(trade_off, OBJECTIVES, {"ms": 0.5})
    with pytest.raises(SearchFailed):
        _ = multi_objective_search(impossible, SPACE, 3).best


def test_pareto_warm_start_spreads_over_each_stored_front_round_robin():
    def stored(name: str, shift: float) -> PastTask:
        trials = [
            {"config": {"x": x, "y": 0.0}, "score": 0.0, "metrics": {"acc": x + shift, "ms": 1.0 + x}}
            for x in np.linspace(0.0, 1.0, 9)
        ]
        # dominated
        trials.append({"config": {"x": 0.5, "y": 0.9}, "score": 0.0, "metrics": {"acc": 0.0, "ms": 9.0}})
        trials.append({"config": {"x": 0.3, "y": 0.3}, "score": 0.0})  # a single-objective trial: no metrics
        return PastTask(name, trials)

    a, b = stored("a", 0.0), stored("b", 0.01)
    front = stored_front(a, OBJECTIVES, None)
    assert [t["config"]["x"] for t in front] == list(np.linspace(1.0, 0.0, 9))  # best accuracy first
    warm = pareto_warm_start(SPACE, [a, b], OBJECTIVES, n=6)
    xs = [w.config["x"] for w, _ in warm]
    assert [origin for _, origin in warm][:2] == ["a", "a"]
    # both ends of a's front, then b's (already taken: skipped), then the middles
    assert xs[:2] == [1.0, 0.0] and 0.5 in xs and len(xs) == len(set(xs)) == 6
    bounded = pareto_warm_start(SPACE, [a], OBJECTIVES, {"ms": 1.5}, n=10)
    assert bounded and all(w.config["x"] <= 0.5 for w, _ in bounded)
