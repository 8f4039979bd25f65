"""What every task memory store promises (see `metanas.memory.store.TaskMemory`)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metanas.memory.records import TaskRecord


def make_record(
    i: int, space: str = "s1", family: str = "f", dim: int = 8, embedder: str = "e"
) -> TaskRecord:
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

    def test_records_filter_and_keep_the_newest_oldest_first(self, tmp_path):
        store = self.open_store(tmp_path)
        records = [make_record(i, "s1" if i % 2 else "s2", family="f" if i < 6 else "g") for i in range(10)]
        store.append([replace(r, created_at=1_000.0 + i) for i, r in enumerate(records)])
        assert [r.key for r in store.records(space_signature="s1", newest=2)] == ["s1/7", "s1/9"]
        assert len(store.records(space_signature=["s1", "s2"], family="f")) == 6
        assert (
            all(r.task_id != "t3" for r in store.records(exclude_task="t3"))
            and len(store.records(exclude_task="t3")) == 9
        )
        assert store.records(embedder="nobody") == [] and "s1/3" in store and "s1/4" not in store

    def test_spaces_count_the_records_of_each_most_first(self, tmp_path):
        store = self.open_store(tmp_path)
        store.append([make_record(i, "s1") for i in range(3)] + [make_record(10 + i, "s2") for i in range(5)])
        assert [(sig, n) for sig, _, n in store.spaces()] == [("s2", 5), ("s1", 3)]
        assert [(sig, n) for sig, _, n in store.spaces(exclude_task="t10")] == [("s2", 4), ("s1", 3)]
        assert store.spaces(family="nobody") == []

    def test_the_warm_start_reads_it(self, tmp_path):
        """What `metanas.search`, `MemorySampler` and the policies do with a memory: read the
        stored tasks of a space, build the memory's model (kept under `path`) and propose."""
        from metanas.memory.past_tasks import memory_model, past_tasks
        from metanas.memory.records import TaskRecord
        from metanas.searchers.space import Float, SearchSpace

        space = SearchSpace([Float("x", 0.0, 1.0)])
        store = self.open_store(tmp_path)
        for task in range(4):
            trials = [
                {"config": {"x": x / 10}, "score": -abs(x / 10 - 0.3) - task / 100, "budget": None}
                for x in range(11)
            ]
            best = max(trials, key=lambda t: t["score"])
            store.append(
                [
                    TaskRecord(
                        key=f"k{task}",
                        task_id=f"t{task}",
                        family="f",
                        embedder="e",
                        embedding=np.full(4, task, np.float32),
                        space_signature=space.signature,
                        best_config=best["config"],
                        best_score=best["score"],
                        trials=trials,
                        searcher="optuna",
                        created_at=float(task),
                        space=space.to_spec(),
                    )
                ]
            )
        assert [t.task_id for t in past_tasks(store, space, None, "t1")] == ["t0", "t2", "t3"]
        past, model = memory_model(store, space, None, "new", 0, None)
        assert len(past) == 4 and Path(store.path).is_dir()
        ((config, predicted, _),) = model.portfolio(1)
        assert abs(config["x"] - 0.3) <= 0.1 and 0.0 <= predicted <= 1.0
