"""The memory store: idempotent appends, space isolation, crash safety, repair on load."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from metanas.memory.records import ARROW_SCHEMA, TaskRecord
from metanas.memory.store import MemoryStore
from metanas.testing import StoreContract
from metanas.testing.stores import make_record as rec


class TestMemoryStore(StoreContract):
    def open_store(self, path):
        return MemoryStore(path)

    def corrupt_one_part(self, path):
        parts = sorted((path / "parts").glob("*.parquet"))
        parts[len(parts) // 2].write_bytes(b"not parquet at all")


def test_a_batch_with_mixed_dimensions_is_rejected_before_anything_is_written(tmp_path):
    store = MemoryStore(tmp_path)
    with pytest.raises(ValueError, match="dims"):
        store.append([rec(0, "s9", dim=8), rec(1, "s9", dim=5)])
    assert len(MemoryStore(tmp_path)) == 0 and not list((tmp_path / "parts").glob("*.parquet"))
    with pytest.raises(ValueError, match="k must be"):
        store.nearest(np.ones(8), 0, "s9", "e")


def test_a_rare_family_is_found_among_many_others(tmp_path):
    store = MemoryStore(tmp_path)
    store.append([rec(i, family="common") for i in range(199)] + [rec(500, family="rare")])
    hits = store.nearest(rec(3).embedding, 1, "s1", "e", family="rare")
    assert [r.key for r, _ in hits] == ["s1/500"]


def test_family_filter_keeps_to_the_family(tmp_path):
    store = MemoryStore(tmp_path)
    store.append([rec(i, "s1", family="a" if i % 2 else "b") for i in range(30)])
    assert {r.family for r, _ in store.nearest(rec(0).embedding, 5, "s1", "e", family="a")} == {"a"}
    with pytest.raises(ValueError, match="dims"):
        store.nearest(np.ones(3), 1, "s1", "e")


WRITER = """
import sys, numpy as np
from metanas.memory.store import MemoryStore
from metanas.memory.records import TaskRecord
store = MemoryStore(sys.argv[1])
for batch in range(10_000):
    store.append([TaskRecord(key=f"{batch}/{i}", task_id=str(i), family="f", embedder="e",
        embedding=np.random.rand(16).astype("float32"), space_signature="s", best_config={}, best_score=1.0)
        for i in range(200)])
    print(batch, flush=True)
"""


def test_writer_killed_mid_append_leaves_a_loadable_store(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    for _ in range(5):  # five batches committed
        proc.stdout.readline()
    time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    store = MemoryStore(tmp_path)
    assert len(store) >= 5 * 200 and len(store) % 200 == 0  # whole parts only
    assert len(set(store.keys())) == len(store)
    assert not store.problems
    # a temporary file left by the killed writer is ignored on open, and removed by the
    # next writer once it is old enough not to belong to a live write
    leftover = tmp_path / "parts" / ".part-x.parquet.123.tmp"
    leftover.write_bytes(b"half a part")
    for f in tmp_path.rglob("*.tmp"):
        os.utime(f, (time.time() - 3600, time.time() - 3600))
    assert len(MemoryStore(tmp_path)) == len(store)
    store.append([rec(10_000, "s", dim=16)])
    assert not list(tmp_path.rglob("*.tmp"))


def test_truncated_index_is_rebuilt_with_a_warning(tmp_path, caplog):
    store = MemoryStore(tmp_path)
    records = [rec(i) for i in range(50)]
    store.append(records)
    store.nearest(records[0].embedding, 1, "s1", "e")  # builds the index
    store.save_index()
    index_file = next((tmp_path / "index").glob("*.faiss"))
    index_file.write_bytes(index_file.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        reopened = MemoryStore(tmp_path)
    assert any("rebuilding" in m for m in caplog.messages)
    assert reopened.nearest(records[9].embedding, 1, "s1", "e")[0][0].key == "s1/9"


def test_corrupt_part_is_set_aside_and_reported_while_the_rest_loads(tmp_path, caplog):
    store = MemoryStore(tmp_path)
    store.append([rec(i) for i in range(10)])
    store.append([rec(i) for i in range(10, 20)])
    store.append([rec(i) for i in range(20, 30)])
    parts = sorted((tmp_path / "parts").glob("*.parquet"))
    parts[1].write_bytes(b"not parquet at all")
    with caplog.at_level(logging.WARNING):
        reopened = MemoryStore(tmp_path)
    assert len(reopened) == 20 and "s1/15" not in reopened and "s1/25" in reopened
    assert len(reopened.problems) == 1 and parts[1].name in reopened.problems[0]
    assert (tmp_path / "quarantine" / parts[1].name).exists()
    assert any("corrupt" in m for m in caplog.messages)


def test_approximate_index_past_the_threshold_keeps_recall(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 16))
    records = []
    for i in range(3000):
        e = centres[i % 20] + 0.3 * rng.standard_normal(16)
        records.append(
            TaskRecord(
                key=str(i),
                task_id=str(i),
                family="f",
                embedder="e",
                embedding=e.astype(np.float32),
                space_signature="s",
                best_config={},
                best_score=0.0,
            )
        )
    store = MemoryStore(tmp_path, exact_threshold=500)
    store.append(records)
    E = np.stack([r.embedding for r in records])
    E = E / np.linalg.norm(E, axis=1, keepdims=True)
    recalls = []
    for q in range(0, 3000, 150):
        exact = set(np.argsort(-E @ E[q])[:10].tolist())
        got = {int(r.key) for r, _ in store.nearest(records[q].embedding, 10, "s", "e")}
        recalls.append(len(exact & got) / 10)
    group = store._groups[("e", "s")]
    assert type(group.index).__name__ == "IndexIVFScalarQuantizer" and group.nprobe > 0  # (calibrated)
    assert np.mean(recalls) >= 0.9


def test_nothing_in_the_store_is_a_pickle(tmp_path):
    store = MemoryStore(tmp_path)
    store.append([rec(i) for i in range(5)])
    store.nearest(rec(0).embedding, 1, "s1", "e")
    store.save_index()
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert f.suffix in (".parquet", ".json", ".faiss"), f
    part = next((tmp_path / "parts").glob("*.parquet"))
    assert pq.read_schema(part).remove_metadata() == ARROW_SCHEMA


@pytest.mark.parametrize("seed", range(4))
def test_the_store_behaves_like_a_dict_of_its_records(tmp_path, seed):
    """Random sequences of appends (new and repeated keys), reloads, filtered reads,
    corrupted parts and deleted indexes, checked against a plain dict after every step."""
    import random
    from dataclasses import replace

    rng = random.Random(seed)
    path = tmp_path / "mem"
    store, model, made = MemoryStore(path), {}, 0
    for _ in range(30):
        op = rng.choice(["append", "append", "append", "reload", "read", "corrupt", "drop_index"])
        if op == "append":
            batch = []
            for _ in range(rng.randint(1, 6)):
                if model and rng.random() < 0.3:  # an old key again: never stored twice
                    batch.append(model[rng.choice(sorted(model))])
                else:
                    made += 1
                    batch.append(
                        replace(
                            rec(made, space=rng.choice(["s1", "s2"]), family=rng.choice(["a", "b"])),
                            task_id=f"t{made % 7}",
                            created_at=float(made),
                        )
                    )
            fresh = {r.key: r for r in batch if r.key not in model}
            assert store.append(batch) == len(fresh)
            model.update(fresh)
        elif op == "reload":
            store = MemoryStore(path)
        elif op == "corrupt" and list((path / "parts").glob("*.parquet")):
            part = rng.choice(sorted((path / "parts").glob("*.parquet")))
            lost = set(pq.read_table(part).column("key").to_pylist())
            part.write_bytes(b"not parquet")
            store = MemoryStore(path)
            assert len(store.problems) == 1 and part.name in store.stats()["quarantined"]
            model = {k: r for k, r in model.items() if k not in lost}
        elif op == "drop_index":
            for f in (path / "index").glob("*"):
                f.unlink()
            store = MemoryStore(path)
        space, family, exclude, newest = (
            rng.choice(["s1", "s2"]),
            rng.choice([None, "a"]),
            f"t{rng.randrange(7)}",
            rng.choice([None, 3]),
        )
        want = sorted(
            (
                r
                for r in model.values()
                if r.space_signature == space
                and (family is None or r.family == family)
                and r.task_id != exclude
            ),
            key=lambda r: r.created_at,
        )
        want = want[-newest:] if newest else want
        got = store.records(space_signature=space, family=family, exclude_task=exclude, newest=newest)
        assert (
            [r.key for r in got] == [r.key for r in want]
            if newest
            else sorted(r.key for r in got) == sorted(r.key for r in want)
        )
        assert sorted(store.keys()) == sorted(model)
        if model:
            some = model[rng.choice(sorted(model))]
            hit, sim = store.nearest(some.embedding, 1, some.space_signature, some.embedder)[0]
            assert sim == pytest.approx(1.0, abs=1e-4)


def test_an_os_error_reading_a_part_is_raised_not_quarantined(tmp_path, monkeypatch):
    store = MemoryStore(tmp_path)
    store.append([rec(i) for i in range(3)])

    def no_permission(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pq, "read_table", no_permission)
    with pytest.raises(PermissionError, match="could not be read"):
        MemoryStore(tmp_path)
    monkeypatch.undo()
    assert len(MemoryStore(tmp_path)) == 3 and not (tmp_path / "quarantine").exists()


def test_a_directory_that_is_not_a_memory_is_refused_and_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a memory"):
        MemoryStore(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    with pytest.raises(ValueError, match="is a file"):
        MemoryStore(tmp_path / "notes.txt")
