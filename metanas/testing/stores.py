"""What every task memory store promises (see `metanas.memory.store.TaskMemory`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metanas.memory.records import TaskRecord


def make_record(i: int, space: str = "s1", family: str = "f", dim: int = 8, embedder: str = "e") -> TaskRecord:
    rng = np.random.default_rng(i)
    return TaskRecord(
        key=f"{space}/{i}",
        task_id=f"t{i}",
        family=family,
        embedder=embedder,
        embedding=rng.standard_normal(dim).astype(np.float32),
        space_signature=space,
        best_config={"x": i},
        best_score=float(i),
        trials=[{"config": {"x": i}, "score": float(i), "budget": None}],
        searcher="optuna",
    )


class StoreContract:
    """Subclass and implement `open_store(path)` and `corrupt_one_part(path)` (damage one
    unit of the store's storage on disk, as a failing disk or a killed copy would)."""

    def open_store(self, path: Path) -> Any:
        raise NotImplementedError

    def corrupt_one_part(self, path: Path) -> None:
        raise NotImplementedError

    def test_appended_records_survive_a_reload(self, tmp_path):
        records = [make_record(i) for i in range(20)]
        assert self.open_store(tmp_path).append(records) == 20
        store = self.open_store(tmp_path)
        assert len(store) == 20 and sorted(store.keys()) == sorted(r.key for r in records)
        got = store.get(records[7].key)
        assert got.trials == records[7].trials and np.array_equal(got.embedding, records[7].embedding)
        hit, sim = store.nearest(records[3].embedding, 1, "s1", "e")[0]
        assert hit.key == records[3].key and sim == pytest.approx(1.0, abs=1e-5)

    def test_a_key_is_stored_once(self, tmp_path):
        store = self.open_store(tmp_path)
        records = [make_record(i) for i in range(10)]
        assert store.append(records + [records[0]]) == 10  # a repeat inside the batch
        assert store.append(records[:5]) == 0  # and across calls
        assert len(self.open_store(tmp_path)) == 10

    def test_queries_never_cross_spaces_or_embedders(self, tmp_path):
        store = self.open_store(tmp_path)
        store.append([make_record(i, "s1") for i in range(20)] + [make_record(i, "s2") for i in range(20)])
        store.append([make_record(100 + i, "s1", embedder="other", dim=4) for i in range(5)])
        hits = store.nearest(make_record(0, "s2").embedding, 10, "s1", "e")
        assert len(hits) == 10 and all(r.space_signature == "s1" and r.embedder == "e" for r, _ in hits)
        assert store.nearest(make_record(0).embedding, 5, "s3", "e") == []
        assert {r.space_signature for r in store.records(space_signature="s2")} == {"s2"}

    def test_a_corrupt_part_costs_only_its_own_records_and_is_reported(self, tmp_path, caplog):
        store = self.open_store(tmp_path)
        for start in (0, 10, 20):
            store.append([make_record(i) for i in range(start, start + 10)])
        self.corrupt_one_part(tmp_path)
        with caplog.at_level(logging.WARNING):
            reopened = self.open_store(tmp_path)
        assert 10 <= len(reopened) < 30  # the healthy parts all load
        assert len(reopened.problems) == 1 and any("corrupt" in m for m in caplog.messages)
