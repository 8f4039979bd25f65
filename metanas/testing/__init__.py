"""Contract suites for metanas's extension points, as importable test mixins (the idea of
optuna's `optuna.testing`): a test class per extension point, which each implementation's
test module subclasses, filling in how to build the thing under test.

    from metanas.testing import SearcherContract

    class TestMySearcher(SearcherContract):
        def make_searcher(self, seed, fidelities=None):
            return MySearcher(seed=seed, fidelities=fidelities)

Needs pytest. This package sits above the product's parts (searchers < memory < cluster <
platform): it may import any of them, and none of them imports it.
"""

from metanas.testing.embedders import EmbedderContract
from metanas.testing.policies import PolicyContract
from metanas.testing.searchers import SearcherContract
from metanas.testing.stores import StoreContract

__all__ = ["EmbedderContract", "PolicyContract", "SearcherContract", "StoreContract"]
