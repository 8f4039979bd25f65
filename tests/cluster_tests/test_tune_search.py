"""The Ray Tune searcher passes the same searcher contract, on the session's real local Ray."""

from __future__ import annotations

import pytest

from metanas.cluster.tune_search import TuneSearcher
from metanas.testing import SearcherContract

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


class TestTuneSearcher(SearcherContract):
    deterministic_order = False  # two trials run at once: same configs, any order

    @pytest.fixture(autouse=True)
    def _ray(self, ray_session):
        yield

    def make_searcher(self, seed, fidelities=None):
        return TuneSearcher(seed=seed, fidelities=fidelities, max_concurrent=2)


def test_ray_tune_searches_with_the_memory_sampler(ray_session, tmp_path):
    """Tune users reach the memory through OptunaSearch(sampler=MemorySampler(...))."""
    from metanas.memory.records import PastTask
    from metanas.memory.sampler import MemorySampler
    from metanas.searchers.random_search import RandomSearcher
    from metanas.testing.searchers import BEST, SPACE, toy_score

    past = [
        PastTask(
            f"t{i}", [t.to_dict() for t in RandomSearcher(seed=i).search(toy_score, SPACE, 30).evaluated]
        )
        for i in range(3)
    ]
    sampler = MemorySampler(SPACE, past=past, seed=0)
    result = TuneSearcher(seed=0, sampler=sampler, max_concurrent=1).search(toy_score, SPACE, budget=4)
    assert len(result.evaluated) == 4 and sampler.history  # the model chose Tune's trials
    assert result.best.score > toy_score({**BEST, "n": 6})


def test_a_tune_run_fills_the_memory_and_the_next_starts_from_it(ray_session, tmp_path):
    """Issue 28: Ray Tune users write the memory with MemoryTuneCallback and read it with
    OptunaSearch(sampler=MemorySampler(...)), with no metanas space, on real Ray."""
    import math

    import optuna
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from metanas.cluster.tune_memory import MemoryTuneCallback
    from metanas.memory.sampler import WHY_ATTR, MemorySampler
    from metanas.memory.store import MemoryStore

    space = {
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
        "layers": optuna.distributions.IntDistribution(4, 32, step=4),
        "act": optuna.distributions.CategoricalDistribution(["relu", "tanh", "gelu"]),
    }

    def train(config, shift=0.0):
        tune.report(
            {
                "acc": -abs(math.log10(config["lr"]) + 2 + shift)
                - abs(config["layers"] - 16) / 16
                + 0.3 * (config["act"] == "gelu")
            }
        )

    def run(task: str, shift: float, sampler, trials: int):
        searcher = OptunaSearch(space, metric="acc", mode="max", sampler=sampler)
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(train, shift=shift), {"cpu": 1}),
            tune_config=tune.TuneConfig(
                search_alg=tune.search.ConcurrencyLimiter(searcher, 1), num_samples=trials
            ),
            run_config=tune.RunConfig(
                storage_path=str(tmp_path / "tune"),
                name=task,
                verbose=0,
                callbacks=[MemoryTuneCallback(tmp_path / "mem", task, space=space, metric="acc", mode="max")],
            ),
        )
        return tuner.fit(), searcher

    run("past", 0.0, optuna.samplers.RandomSampler(seed=0), 8)
    record = MemoryStore(tmp_path / "mem").get("tune/past")
    assert (
        len(record.trials) == 8
        and record.task_id == "past"
        and [p["name"] for p in record.space] == ["lr", "layers", "act"]
    )
    sampler = MemorySampler(memory=tmp_path / "mem", task_id="new", seed=0)
    grid, searcher = run("new", 0.1, sampler, 4)
    assert len(grid) == 4 and len(sampler.history) == 4  # every trial the model's
    whys = [t.system_attrs[WHY_ATTR] for t in searcher._ot_study.trials]
    assert all(w["source"].startswith("memory model") and set(w["tasks"]) == {"past"} for w in whys)
    assert len(MemoryStore(tmp_path / "mem")) == 2  # the second run stored too, once
