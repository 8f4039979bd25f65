"""`MemorySampler` inside plain Optuna: it passes the searcher contract, and a study on a
task like the stored ones starts from what they taught."""

from __future__ import annotations

import optuna
import pytest

from metanas.memory.sampler import MemorySampler
from metanas.memory.records import PastTask
from metanas.searchers.optuna_search import OptunaSearcher
from metanas.searchers.random_search import RandomSearcher
from metanas.testing import SearcherContract
from metanas.testing.searchers import SPACE, toy_score


def _shifted(shift: float):
    return lambda c: toy_score({**c, "x": c["x"] - shift})


PAST = [
    PastTask(f"t{i}", [t.to_dict() for t in RandomSearcher(seed=i).search(_shifted(s), SPACE, 25).evaluated])
    for i, s in enumerate((-0.5, 0.0, 0.5))
]


class TestMemorySampler(SearcherContract):
    def make_searcher(self, seed, fidelities=None):
        return OptunaSearcher(seed=seed, fidelities=fidelities, sampler=MemorySampler(SPACE, past=PAST, seed=seed))


def test_an_optuna_study_with_the_memory_finds_the_family_optimum_early():
    def objective(trial):
        config = {"x": trial.suggest_float("x", -5, 5), "n": trial.suggest_int("n", 1, 10), "c": trial.suggest_categorical("c", ["a", "b", "c"])}
        return -toy_score(config)  # a minimising study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warm = optuna.create_study(direction="minimize", sampler=MemorySampler(SPACE, past=PAST, seed=0))
    warm.optimize(objective, n_trials=8)
    cold = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=0))
    cold.optimize(objective, n_trials=8)
    assert warm.best_value < cold.best_value
    assert warm.best_value < -0.5  # near the shared optimum (x=1, n=3, c=b scores 1)
    sampler = warm.sampler
    assert sampler.history and sampler.history[0].source == "portfolio"  # why each trial was chosen


def test_a_space_is_required():
    with pytest.raises(TypeError, match="SearchSpace"):
        MemorySampler({"x": (0, 1)})
