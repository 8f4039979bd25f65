"""`metanas bench memory`: insert throughput, single-query latency, recall and reload time
of the task memory at scale, and the time a warm start takes to read what it needs, on
synthetic records. Embedding sets: `clustered` (families far apart, as real task
embeddings cluster by family), `overlapping` (families whose clouds overlap: an index
probing a fixed 12 lists recalled about 0.8 of the true neighbours, as issue 13 saw on
overlapping embeddings) and `hard` (overlapping more: close to uniform on the sphere)."""

from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np

from metanas.memory.records import TaskRecord
from metanas.memory.store import MemoryStore


def _records(start: int, embeddings: np.ndarray) -> list[TaskRecord]:
    return [
        TaskRecord(
            key=f"bench/{start + i}",
            task_id=f"task{start + i}",
            family=f"family{(start + i) % 8}",
            embedder="bench",
            embedding=e,
            space_signature="bench-space",
            best_config={"lr": 0.01, "width": 64},
            best_score=0.5,
            trials=[],
            searcher="optuna",
            campaign_id="bench",
        )
        for i, e in enumerate(embeddings)
    ]


SPREAD = {"clustered": 0.35, "overlapping": 1.25, "hard": 1.5}  # noise around each family's centre (centres ~ N(0, 1))


def bench_memory(
    records: int = 100_000, dim: int = 64, seed: int = 0, queries: int = 300, batch: int = 100_000, data: str = "clustered",
) -> dict[str, Any]:
    if data not in SPREAD:
        raise ValueError(f"data: expected one of {', '.join(SPREAD)}, got {data!r}")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(16, records // 1000), dim)).astype(np.float32)
    assign = rng.integers(len(centres), size=records)
    emb = centres[assign] + SPREAD[data] * rng.standard_normal((records, dim)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="metanas-bench-memory-") as path:
        store = MemoryStore(path)
        insert_s = 0.0
        for start in range(0, records, batch):
            recs = _records(start, emb[start : start + batch])  # building records is the caller's work
            t = time.perf_counter()
            store.append(recs)
            insert_s += time.perf_counter() - t
        t = time.perf_counter()
        store.build_index()  # index build and persist count as insertion
        insert_s += time.perf_counter() - t

        normed = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        picks = rng.integers(records, size=queries)
        qs = normed[picks] + 0.05 * rng.standard_normal((queries, dim)).astype(np.float32)
        latencies, results = [], []
        for q in qs:  # timed alone: the exact search below would flush the caches between queries
            t = time.perf_counter()
            hits = store.nearest(q, 10, "bench-space", "bench")
            latencies.append((time.perf_counter() - t) * 1000)
            results.append({int(r.key.split("/")[1]) for r, _ in hits})
        recalls = []
        for q, got in zip(qs, results):
            qn = q / np.linalg.norm(q)
            exact = set(np.argpartition(-(normed @ qn), 10)[:10].tolist())
            recalls.append(len(got & exact) / 10)
        # What a warm start reads: the newest 500 records of the space (not the task's own)
        # and, with an embedding, its nearest neighbours.
        reads = []
        for i in range(5):
            t = time.perf_counter()
            store.records(space_signature="bench-space", exclude_task=f"task{i}", newest=500)
            store.nearest(qs[i], 10, "bench-space", "bench")
            reads.append((time.perf_counter() - t) * 1000)
        nprobe = next(iter(store._groups.values())).nprobe
        del store
        t = time.perf_counter()
        reopened = MemoryStore(path)
        reopened.nearest(qs[0], 10, "bench-space", "bench")
        reload_s = time.perf_counter() - t
    return {
        "records": records,
        "dim": dim,
        "insert_per_s": round(records / insert_s, 1),
        "query_p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "query_p99_ms": round(float(np.percentile(latencies, 99)), 3),
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "nprobe": nprobe,
        "warm_start_read_ms": round(float(np.median(reads)), 1),
        "reload_s": round(reload_s, 3),
        "data": data,
    }
