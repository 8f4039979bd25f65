"""`MemorySampler` inside plain Optuna: it passes the searcher contract, and a study on a
task like the stored ones starts from what they taught."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from metanas.memory.records import PastTask
from metanas.memory.sampler import MemorySampler
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
        return OptunaSearcher(
            seed=seed, fidelities=fidelities, sampler=MemorySampler(SPACE, past=PAST, seed=seed)
        )


def test_an_optuna_study_with_the_memory_finds_the_family_optimum_early():
    def objective(trial):
        config = {
            "x": trial.suggest_float("x", -5, 5),
            "n": trial.suggest_int("n", 1, 10),
            "c": trial.suggest_categorical("c", ["a", "b", "c"]),
        }
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


def _objective(trial):
    config = {
        "x": trial.suggest_float("x", -5, 5),
        "n": trial.suggest_int("n", 1, 10),
        "c": trial.suggest_categorical("c", ["a", "b", "c"]),
    }
    time.sleep(0.02)  # long enough for the workers' trials to overlap
    return toy_score(config)


def _duplicates(study) -> int:
    keys = [tuple(sorted(t.params.items())) for t in study.trials]
    return len(keys) - len(set(keys))


def test_parallel_trials_never_repeat_a_proposal():
    """Issue 27: with n_jobs=2 both threads saw the same history and the model proposed the
    same config to both."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=MemorySampler(SPACE, past=PAST, seed=0, handoff=40)
    )
    study.optimize(_objective, n_trials=16, n_jobs=2)
    assert len(study.trials) == 16 and _duplicates(study) == 0
    proposed = [t.system_attrs.get("metanas:proposal") for t in study.trials]
    assert all(proposed) and len(set(proposed)) == 16  # every trial's proposal was written to it


_WORKER = """
import sys, time, optuna
sys.path.insert(0, {repo!r})
from tests.memory_tests.test_sampler import PAST, _objective
from metanas.memory.sampler import MemorySampler
from metanas.testing.searchers import SPACE
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name="shared", storage={storage!r},
                          sampler=MemorySampler(SPACE, past=PAST, seed=0, handoff=40))
study.optimize(_objective, n_trials=8)
"""


def test_two_processes_sharing_one_storage_never_repeat_a_proposal(tmp_path):
    """Two workers with the same seed would propose the same configs, one for one."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="shared", storage=storage, direction="maximize")
    repo = str(Path(__file__).resolve().parents[2])
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER.format(repo=repo, storage=storage)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        assert worker.wait(timeout=300) == 0, worker.stderr.read()[-2000:]
    study = optuna.load_study(study_name="shared", storage=storage)
    assert len(study.trials) == 16 and _duplicates(study) == 0


def test_reseed_rng_reseeds_the_model_too():
    def proposals(reseed: bool) -> list:
        sampler = MemorySampler(SPACE, past=PAST, seed=0)
        if reseed:
            sampler.reseed_rng()  # as Optuna does in each worker process
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(_objective, n_trials=8)
        assert len(sampler.history) == 8  # every one the model's
        return [t.params for t in study.trials]

    assert proposals(False) == proposals(False)  # seeded: reproducible
    assert proposals(True) != proposals(False)


def test_the_sampler_pickles_with_what_it_learned():
    import pickle

    sampler = MemorySampler(SPACE, past=PAST, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_objective, n_trials=3)
    copy = pickle.loads(pickle.dumps(sampler))  # (Ray Tune ships its searcher to a worker)
    assert len(copy.history) == 3 and copy.model is not None
    study.sampler = copy
    study.optimize(_objective, n_trials=2)
    assert _duplicates(study) == 0
