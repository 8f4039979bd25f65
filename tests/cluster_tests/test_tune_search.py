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
    from metanas.memory.sampler import MemorySampler
    from metanas.memory.records import PastTask
    from metanas.searchers.random_search import RandomSearcher
    from metanas.testing.searchers import BEST, SPACE, toy_score

    past = [PastTask(f"t{i}", [t.to_dict() for t in RandomSearcher(seed=i).search(toy_score, SPACE, 30).evaluated]) for i in range(3)]
    sampler = MemorySampler(SPACE, past=past, seed=0)
    result = TuneSearcher(seed=0, sampler=sampler, max_concurrent=1).search(toy_score, SPACE, budget=4)
    assert len(result.evaluated) == 4 and sampler.history  # the model chose Tune's trials
    assert result.best.score > toy_score({**BEST, "n": 6})
