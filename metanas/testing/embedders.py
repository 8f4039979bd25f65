"""What every task `Embedder` promises (see `metanas.memory.embedders.Embedder`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from metanas.memory.embedders import Embedder


class EmbedderContract:
    """Subclass and implement `make_embedder` and `tasks` (the `embed` arguments of at
    least two different tasks)."""

    def make_embedder(self) -> Embedder:
        raise NotImplementedError

    def tasks(self) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def test_follows_the_protocol_with_a_stable_name(self):
        a, b = self.make_embedder(), self.make_embedder()
        assert isinstance(a, Embedder)
        assert isinstance(a.name, str) and a.name and a.name == b.name

    def test_is_deterministic(self):
        embedder = self.make_embedder()
        for task in self.tasks():
            assert np.array_equal(embedder.embed(*task), self.make_embedder().embed(*task))

    def test_gives_one_finite_float32_vector_of_fixed_dimension(self):
        vectors = [self.make_embedder().embed(*task) for task in self.tasks()]
        assert len({v.shape for v in vectors}) == 1 and vectors[0].ndim == 1 and len(vectors[0]) > 0
        assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in vectors)

    def test_tells_different_tasks_apart(self):
        first, *others = [self.make_embedder().embed(*task) for task in self.tasks()]
        assert others and not all(np.allclose(first, o) for o in others)
