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
from metanas.memory.sampler import PROPOSAL_ATTR, WHY_ATTR, MemorySampler, _must_yield
from metanas.searchers.optuna_search import OptunaSearcher
from metanas.searchers.random_search import RandomSearcher
from metanas.searchers.space import config_key
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


def _running_pair(key: str) -> tuple:
    """A study with two running trials that both proposed `key`."""
    study = optuna.create_study(direction="maximize")
    first, second = study.ask(), study.ask()
    for t in (first, second):
        study._storage.set_trial_system_attr(t._trial_id, PROPOSAL_ATTR, key)
    frozen = {t.number: study._storage.get_trial(t._trial_id) for t in (first, second)}
    return study, frozen[0], frozen[1]


def test_of_two_colliding_proposals_exactly_one_is_kept():
    """Two processes that proposed the same config at once: one keeps it, the other
    proposes again (both used to yield, then propose the same again in lockstep)."""
    import threading

    study, lower, higher = _running_pair('{"x": 1}')
    assert _must_yield(study, higher, '{"x": 1}', SPACE)  # the higher-numbered gives way at once
    # the lower-numbered waits for the higher one to decide: it proposes again ...
    threading.Timer(
        0.1, study._storage.set_trial_system_attr, (higher._trial_id, PROPOSAL_ATTR, '{"x": 2}')
    ).start()
    assert not _must_yield(study, lower, '{"x": 1}', SPACE)
    # ... or it had checked before the lower one wrote, and committed: then the lower gives way
    study, lower, higher = _running_pair('{"x": 1}')
    threading.Timer(0.1, study._storage.set_trial_system_attr, (higher._trial_id, WHY_ATTR, {})).start()
    assert _must_yield(study, lower, '{"x": 1}', SPACE)
    assert not _must_yield(study, lower, '{"x": 3}', SPACE)  # no collision: nothing to wait for


def test_a_config_finished_while_it_was_being_proposed_is_given_up():
    """The race the two-process test met on a slow machine: another process's trial took
    the config, ran and finished between this proposal's reading of the history and its
    check; a finished trial is no longer 'running', and the check used to miss it."""
    study = optuna.create_study(direction="maximize")
    config = {"x": 1.0, "n": 2, "c": "a"}
    study.enqueue_trial(config)
    study.optimize(lambda t: _objective(t), n_trials=1)
    mine = study.ask()
    key = config_key(SPACE.config_from(study.trials[0].params))
    assert _must_yield(study, study._storage.get_trial(mine._trial_id), key, SPACE)
