"""`MemorySampler` against Optuna's own sampler suites, shipped in the installed package
(`optuna.testing.pytest_samplers`), used the way Optuna's samplers use them: as mixins with
a `sampler` fixture. Cold (no memory) and warm: a memory of past studies, written by
`MemoryCallback`, over log floats, stepped ints and floats, categoricals and parameters the
suites never use, named like the suites' own parameters so that the memory's model, not
only the fallback, chooses values in their tests (and each test checks that it did when it
could). Applicable: the basic, relative and multi-objective suites;
`SingleOnlySamplerTestCase` is not (a multi-objective study is the fallback's, not an error).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    MultiObjectiveSamplerTestCase,
    RelativeSamplerTestCase,
)

from metanas.memory.callback import MemoryCallback
from metanas.memory.sampler import MemorySampler

# The past studies: name -> suggestions. Each distribution here is one of the suites' own,
# so the model is asked for it; `unused` and `width` are parameters the suites never ask for.
PAST_SPACES = {
    "log_and_steps": lambda t: (
        t.suggest_float("x", 1e-7, 1.0, log=True),
        t.suggest_int("y", 3, 9, step=2),
        t.suggest_categorical("unused", ["p", "q"]),
    ),
    "grid": lambda t: (
        t.suggest_float("x", -10, 10, step=0.5),
        t.suggest_int("y", 1, 100, log=True),
        t.suggest_float("width", 0.0, 1.0),
    ),
    "plain": lambda t: (t.suggest_float("x", 0, 10), t.suggest_int("y", 0, 10), t.suggest_float("z", -1, 1)),
    "categorical": lambda t: (
        t.suggest_categorical("x", [1, 10, 100]),
        t.suggest_categorical("y", [-1, -10, -100]),
    ),
    "mixed": lambda t: (
        t.suggest_int("x", 1, 10, log=True),
        t.suggest_categorical("y", [-1, -10, -100]),
        t.suggest_categorical("category", ["x", "y"]),
    ),
    "even": lambda t: (t.suggest_int("x", -10, 10, step=2), t.suggest_float("y", -1.0, 1.0)),
    "letters": lambda t: (t.suggest_categorical("x", ["a", "b", "c"]), t.suggest_float("unused", 0.0, 1.0)),
}


def _score(values) -> float:
    return sum(float(v) if not isinstance(v, str) else 0.0 for v in values)


@pytest.fixture(scope="module")
def warm_memory(tmp_path_factory) -> Path:
    memory = tmp_path_factory.mktemp("memory")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name, suggest in PAST_SPACES.items():
        for task in range(3):
            study = optuna.create_study(
                study_name=f"{name}-{task}", sampler=optuna.samplers.RandomSampler(seed=task)
            )
            study.optimize(
                lambda t, suggest=suggest, task=task: _score(suggest(t)) * (1 + task),
                n_trials=12,
                callbacks=[MemoryCallback(memory)],
            )
    return memory


class _Suites(BasicSamplerTestCase, RelativeSamplerTestCase, MultiObjectiveSamplerTestCase):
    @pytest.fixture(autouse=True)
    def _quiet(self):
        with warnings.catch_warnings():  # (the one warning naming what the memory does not know)
            warnings.simplefilter("ignore", UserWarning)
            yield


class TestColdMemorySampler(_Suites):
    @pytest.fixture
    def sampler(self):
        return lambda: MemorySampler(seed=0)


class TestWarmMemorySampler(_Suites):
    @pytest.fixture
    def sampler(self, warm_memory):
        return lambda: MemorySampler(memory=warm_memory, task_id="new", seed=0)


def test_the_warm_suites_reach_the_model(warm_memory):
    """The warm suites above are not the fallback's alone: a suite-like study of a stored
    distribution gets its values from the model (its proposals recorded on the trials)."""
    sampler = MemorySampler(memory=warm_memory, task_id="new", seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(
        lambda t: t.suggest_float("x", 1e-7, 1.0, log=True) + t.suggest_int("y", 3, 9, step=2), n_trials=5
    )
    assert len(sampler.history) == 5
    assert all("metanas:proposal" in t.system_attrs for t in study.trials)
