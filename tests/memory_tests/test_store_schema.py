"""The memory's typed schema (version 2): a part written by the schema-1 writer (kept in
`data/`, made by that writer itself) reads without loss, a mixed memory reads as one, and
compaction rewrites it all in version 2, dropping replaced revisions; a part of a newer
version is refused with one line, never set aside as corrupt."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from metanas.memory.records import ARROW_SCHEMA, SCHEMA_VERSION, VERSION_KEY, TaskRecord, records_to_table
from metanas.memory.store import MemoryStore

DATA = Path(__file__).parent / "data"


def _old_memory(tmp_path: Path) -> Path:
    (tmp_path / "mem" / "parts").mkdir(parents=True)
    shutil.copy(
        DATA / "schema1-part-00000000-000000000000.parquet",
        tmp_path / "mem" / "parts" / "part-00000000-000000000000.parquet",
    )
    return tmp_path / "mem"


def _expected() -> list[dict]:
    return json.loads((DATA / "schema1-records.json").read_text())


def _as_written(r: TaskRecord) -> dict:
    return {
        "key": r.key,
        "task_id": r.task_id,
        "family": r.family,
        "embedder": r.embedder,
        "space_signature": r.space_signature,
        "best_config": r.best_config,
        "best_score": r.best_score,
        "searcher": r.searcher,
        "campaign_id": r.campaign_id,
        "created_at": r.created_at,
        "embedding": r.embedding.tolist(),
        "trials": r.trials,
    }


def test_a_schema_1_part_reads_without_loss(tmp_path):
    store = MemoryStore(_old_memory(tmp_path))
    got = sorted((_as_written(r) for r in store.records()), key=lambda d: d["key"])
    # every field, -inf and None and why and metrics included
    assert got == sorted(_expected(), key=lambda d: d["key"])
    assert not store.problems and store.records(space_signature="s2")[0].space is None


def _record(key: str, revision: int = 0, score: float = 1.0) -> TaskRecord:
    return TaskRecord(
        key=key,
        task_id=key,
        family="default",
        embedder="e",
        embedding=np.ones(3, np.float32),
        space_signature="s",
        best_config={"x": 1},
        best_score=score,
        trials=[
            {
                "config": {"x": 1},
                "score": score,
                "budget": None,
                "source": "optuna",
                "number": 0,
                "state": "COMPLETE",
            }
        ],
        created_at=1764900000.5,
        space=[{"kind": "int", "name": "x", "low": 0, "high": 3, "log": False, "step": 3}],
        revision=revision,
    )


def test_compaction_rewrites_a_mixed_memory_in_version_2(tmp_path):
    path = _old_memory(tmp_path)
    store = MemoryStore(path)
    store.append([_record("new", revision=1)])
    store.append([_record("new", revision=2, score=2.0)])  # replaces it
    before = {r.key: _as_written(r) | {"space": r.space, "revision": r.revision} for r in store.records()}
    assert len(before) == 4 and before["new"]["best_score"] == 2.0
    # the schema-1 part and the live revision's part (the replaced one went at append)
    assert store.compact() == 2
    parts = list((path / "parts").glob("*.parquet"))
    assert len(parts) == 1 and pq.read_schema(parts[0]).metadata[VERSION_KEY] == str(SCHEMA_VERSION).encode()
    assert pq.read_table(parts[0]).schema.field("trials").type == ARROW_SCHEMA.field("trials").type
    after = {
        r.key: _as_written(r) | {"space": r.space, "revision": r.revision}
        for r in MemoryStore(path).records()
    }
    assert after == before and len(MemoryStore(path)) == 4


def test_the_columns_are_typed_for_arrow_users(tmp_path):
    store = MemoryStore(tmp_path / "mem")
    store.append([_record("a")])
    table = pq.read_table(next((tmp_path / "mem" / "parts").glob("*.parquet")))
    assert table.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    trial = table.column("trials")[0][0].as_py()
    assert trial["number"] == 0 and trial["state"] == "COMPLETE" and json.loads(trial["config"]) == {"x": 1}
    assert table.column("space")[0][0].as_py()["step"] == 3


def test_a_part_of_a_newer_version_is_refused_not_set_aside(tmp_path):
    table = records_to_table([_record("a")])
    newer = table.replace_schema_metadata({VERSION_KEY: b"99"})
    (tmp_path / "mem" / "parts").mkdir(parents=True)
    pq.write_table(newer, tmp_path / "mem" / "parts" / "part-00000000-aaaaaaaaaaaa.parquet")
    with pytest.raises(ValueError, match="schema version 99.*upgrade metanas"):
        MemoryStore(tmp_path / "mem")
    assert (tmp_path / "mem" / "parts" / "part-00000000-aaaaaaaaaaaa.parquet").exists()
