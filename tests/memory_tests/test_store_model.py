"""`MemoryStore` against a model of what it promises (a Hypothesis state machine): random
sequences of appends by two writers (as two processes would: neither sees the other's
parts until it reopens), reopening, a corrupted part and a truncated index end in the
records the model says, and every query answers as exact search over those records does.

The model: each part a writer wrote holds the batch's records whose keys were new to that
writer; on opening, the parts load in name order, the first record of a key wins, and a
corrupt part's records are gone (the part set aside and reported)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from metanas.memory.records import TaskRecord
from metanas.memory.store import MemoryStore
from tests.strategies import examples

DIMS = {"e4": 4, "e6": 6}  # two embedders, two sizes
KEYS = st.sampled_from([f"k{i}" for i in range(12)])  # few keys: writers collide on them


@st.composite
def records(draw) -> TaskRecord:
    embedder = draw(st.sampled_from(sorted(DIMS)))
    vector = draw(
        st.lists(
            st.floats(-10, 10, allow_nan=False).filter(lambda x: abs(x) > 1e-3),
            min_size=DIMS[embedder],
            max_size=DIMS[embedder],
        )
    )
    return TaskRecord(
        key=draw(KEYS),
        task_id=draw(st.sampled_from(["a", "b", "c"])),
        family="f",
        embedder=embedder,
        embedding=np.asarray(vector, dtype=np.float32),
        space_signature=draw(st.sampled_from(["s1", "s2"])),
        best_config={"x": draw(st.integers(0, 9))},
        best_score=draw(st.floats(-1e6, 1e6)),
        trials=[{"config": {"x": 1}, "score": 1.0, "budget": None}],
        searcher="optuna",
    )


def _same(a: TaskRecord, b: TaskRecord) -> bool:
    return (a.key, a.task_id, a.embedder, a.space_signature, a.best_config, a.best_score, a.trials) == (
        b.key,
        b.task_id,
        b.embedder,
        b.space_signature,
        b.best_config,
        b.best_score,
        b.trials,
    ) and np.array_equal(a.embedding, b.embedding)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="store-model-"))
        self.parts: dict[str, list[TaskRecord]] = {}  # part file name -> the records written to it
        self.corrupt: set[str] = set()
        self.writers = [MemoryStore(self.dir), MemoryStore(self.dir)]
        self.views = [dict(), dict()]  # what each writer holds: key -> record

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def expected(self) -> dict[str, TaskRecord]:
        out: dict[str, TaskRecord] = {}
        for name in sorted(self.parts):
            if name not in self.corrupt:
                for r in self.parts[name]:
                    out.setdefault(r.key, r)
        return out

    def _part_files(self) -> set[str]:
        return {p.name for p in (self.dir / "parts").glob("part-*.parquet")}

    @rule(writer=st.integers(0, 1), batch=st.lists(records(), min_size=1, max_size=5))
    def append(self, writer, batch):
        store, view = self.writers[writer], self.views[writer]
        dims = {(r.embedder, r.space_signature): len(r.embedding) for r in view.values()}
        before = self._part_files()
        fresh = []
        for r in batch:
            if r.key not in view and r.key not in {f.key for f in fresh}:
                fresh.append(r)
        assert store.append(batch) == len(fresh)
        assert all(
            dims.get((r.embedder, r.space_signature), len(r.embedding)) == len(r.embedding) for r in fresh
        )
        written = self._part_files() - before
        assert len(written) == (1 if fresh else 0)  # one new part, never another writer's overwritten
        if fresh:
            self.parts[written.pop()] = fresh
            view.update({r.key: r for r in fresh})

    @rule(writer=st.integers(0, 1))
    def reopen(self, writer):
        self.writers[writer] = store = MemoryStore(self.dir)
        expected = self.expected()
        assert sorted(store.keys()) == sorted(expected)
        assert len(store.problems) == len(self.corrupt - self._quarantined_before)
        self._quarantined_before = set(self.corrupt)
        self.views[writer] = {k: store.get(k) for k in store.keys()}

    _quarantined_before: set = set()

    @precondition(lambda self: set(self.parts) - self.corrupt)
    @rule(data=st.data())
    def corrupt_a_part(self, data):
        name = data.draw(st.sampled_from(sorted(set(self.parts) - self.corrupt)))
        path = self.dir / "parts" / name
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # a copy cut short
        self.corrupt.add(name)

    @rule(data=st.data())
    def truncate_an_index(self, data):
        files = sorted((self.dir / "index").glob("*.faiss"))
        if files:
            path = data.draw(st.sampled_from(files))
            path.write_bytes(path.read_bytes()[:17])

    @invariant()
    def each_writer_answers_from_what_it_holds(self):
        for store, view in zip(self.writers, self.views):
            assert sorted(store.keys()) == sorted(view)
            for key, record in view.items():
                assert _same(store.get(key), record)
            for signature in ("s1", "s2"):
                got = {r.key for r in store.records(space_signature=signature)}
                assert got == {k for k, r in view.items() if r.space_signature == signature}
            self._nearest_is_exact(store, view)

    def _nearest_is_exact(self, store: MemoryStore, view: dict[str, TaskRecord]) -> None:
        for embedder, signature in {(r.embedder, r.space_signature) for r in view.values()}:
            group = [r for r in view.values() if (r.embedder, r.space_signature) == (embedder, signature)]
            query = group[0].embedding
            k = min(3, len(group))
            hits = store.nearest(query, k, signature, embedder)
            cosine = {
                r.key: float(r.embedding @ query / np.linalg.norm(r.embedding) / np.linalg.norm(query))
                for r in group
            }
            assert len(hits) == k
            for record, sim in hits:
                assert abs(sim - cosine[record.key]) < 1e-4
            # the k best by exact search, up to ties at the k-th similarity
            assert min(sim for _, sim in hits) >= sorted(cosine.values(), reverse=True)[k - 1] - 1e-4


TestStoreModel = StoreMachine.TestCase
TestStoreModel.settings = settings(max_examples=examples(25), stateful_step_count=12, deadline=None)
