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
