"""`metanas bench memory`: insert throughput, single-query latency, recall and reload time
of the task memory at scale, the time a warm start takes to read what it needs, and the
time a search takes to plan with the memory's model (the default policy) before its first
evaluation, on synthetic records. Embedding sets: `clustered` (families far apart, as real task
embeddings cluster by family), `overlapping` (families whose clouds overlap: an index
probing a fixed 12 lists recalled about 0.8 of the true neighbours, as issue 13 saw on
overlapping embeddings) and `hard` (overlapping more: close to uniform on the sphere)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from metanas.memory.memory_model import MODEL_TASKS
from metanas.memory.past_tasks import memory_model
from metanas.memory.records import TaskRecord
from metanas.memory.store import MemoryStore
from metanas.searchers.space import Categorical, Float, Int, SearchSpace

SPACE = SearchSpace(
    (
        Float("lr", 1e-4, 1e-1, log=True),
        Int("width", 16, 512, log=True),
        Int("depth", 1, 4),
        Categorical("act", ("relu", "gelu", "tanh")),
    ),
    name="bench",
)
SEARCHED = 2 * MODEL_TASKS  # the newest records hold a whole search each (50 trials), as a model reads them
TRIALS = 50


def _trials(seed: int) -> list[dict[str, Any]]:
    """A search's trials on a task whose best learning rate depends on the task."""
    rng = np.random.default_rng(seed)
    best_lr = 10 ** rng.uniform(-3.5, -1.5)
    out = []
    for _ in range(TRIALS):
        config = SPACE.sample(int(rng.integers(1 << 30)))
        score = (
            1.0
            - abs(np.log10(config["lr"] / best_lr)) / 3
            - 0.02 * abs(config["depth"] - 2)
            + 0.01 * rng.standard_normal()
        )
        out.append({"config": config, "score": float(score)})
    return out


def _records(start: int, embeddings: np.ndarray, total: int) -> list[TaskRecord]:
    out = []
    for i, e in enumerate(embeddings):
        n = start + i
        trials = _trials(n) if n >= total - SEARCHED else []
        best = (
            max(trials, key=lambda t: t["score"])
            if trials
            else {"config": {"lr": 0.01, "width": 64, "depth": 2, "act": "relu"}, "score": 0.5}
        )
        out.append(
            TaskRecord(
                key=f"bench/{n}",
                task_id=f"task{n}",
                family=f"family{n % 8}",
                embedder="bench",
                embedding=e,
                space_signature=SPACE.signature,
                best_config=best["config"],
                best_score=best["score"],
                trials=trials,
                searcher="optuna",
                campaign_id="bench",
            )
        )
    return out


# noise around each family's centre (centres ~ N(0, 1))
SPREAD = {
    "clustered": 0.35,
    "overlapping": 1.25,
    "hard": 1.5,
}


def bench_memory(
    records: int = 100_000,
    data: str = "clustered",
    dim: int = 64,
    seed: int = 0,
    queries: int = 300,
    batch: int = 100_000,
) -> dict[str, Any]:
    if data not in SPREAD:
        raise ValueError(f"data: expected one of {', '.join(SPREAD)}, got {data!r}")
    rng = np.random.default_rng(seed)
    emb, searched_centre = _embeddings(rng, records, dim, data)
    with tempfile.TemporaryDirectory(prefix="metanas-bench-memory-") as path:
        store = MemoryStore(path)
        insert_s = _fill(store, emb, batch)
        qs, latencies, recalls = _queries(store, emb, rng, queries)
        reads = _warm_start_reads(store, qs)
        train_s, plans, updates = _model_plans(store, Path(path), rng, searched_centre)
        nprobe = store.indexes()[0]["nprobe"]
        del store
        t = time.perf_counter()
        reopened = MemoryStore(path)
        reopened.nearest(qs[0], 10, SPACE.signature, "bench")
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
        "model_plan_ms": {kind: round(float(np.median(ms)), 1) for kind, ms in plans.items()},
        "surrogate_train_s": round(train_s, 2),
        "surrogate_updates": updates,
        "reload_s": round(reload_s, 3),
        "data": data,
    }


def _embeddings(rng: np.random.Generator, records: int, dim: int, data: str) -> tuple[np.ndarray, np.ndarray]:
    """Every record's embedding (families around random centres), and the centre of the
    searched records: one family of their own, so a new task of it finds them."""
    centres = rng.standard_normal((max(16, records // 1000), dim)).astype(np.float32)
    assign = rng.integers(len(centres), size=records)
    emb = centres[assign] + SPREAD[data] * rng.standard_normal((records, dim)).astype(np.float32)
    searched_centre = rng.standard_normal(dim).astype(np.float32)
    emb[-SEARCHED:] = searched_centre + 0.35 * rng.standard_normal((min(SEARCHED, records), dim)).astype(
        np.float32
    )
    return emb, searched_centre


def _fill(store: MemoryStore, emb: np.ndarray, batch: int) -> float:
    """Append every record in batches and build the indexes; the seconds that took
    (building the records is the caller's work, untimed)."""
    insert_s = 0.0
    for start in range(0, len(emb), batch):
        recs = _records(start, emb[start : start + batch], len(emb))
        t = time.perf_counter()
        store.append(recs)
        insert_s += time.perf_counter() - t
    t = time.perf_counter()
    store.build_index()  # index build and persist count as insertion
    return insert_s + time.perf_counter() - t


def _queries(
    store: MemoryStore, emb: np.ndarray, rng: np.random.Generator, queries: int
) -> tuple[np.ndarray, list[float], list[float]]:
    """Queries near stored records: each one's latency (ms) and recall@10 against exact search."""
    normed = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    picks = rng.integers(len(emb), size=queries)
    qs = normed[picks] + 0.05 * rng.standard_normal((queries, emb.shape[1])).astype(np.float32)
    latencies, results = [], []
    for q in qs:  # timed alone: the exact search below would flush the caches between queries
        t = time.perf_counter()
        hits = store.nearest(q, 10, SPACE.signature, "bench")
        latencies.append((time.perf_counter() - t) * 1000)
        results.append({int(r.key.split("/")[1]) for r, _ in hits})
    recalls = []
    for q, got in zip(qs, results):
        qn = q / np.linalg.norm(q)
        exact = set(np.argpartition(-(normed @ qn), 10)[:10].tolist())
        recalls.append(len(got & exact) / 10)
    return qs, latencies, recalls


def _warm_start_reads(store: MemoryStore, qs: np.ndarray) -> list[float]:
    """What a warm start reads (ms): the newest 500 records of the space (not the task's
    own) and, with an embedding, its nearest neighbours."""
    reads = []
    for i in range(5):
        t = time.perf_counter()
        store.records(space_signature=SPACE.signature, exclude_task=f"task{i}", newest=500)
        store.nearest(qs[i], 10, SPACE.signature, "bench")
        reads.append((time.perf_counter() - t) * 1000)
    return reads


def _model_plans(
    store: MemoryStore, path: Path, rng: np.random.Generator, searched_centre: np.ndarray
) -> tuple[float, dict[str, list[float]], int]:
    """A search's planning with the default policy: read the memory, build its model,
    propose the first config; without an embedding (the newest tasks) and with one (the
    nearest, by FAISS). The surrogate kept in the memory is trained by the first search
    (timed apart) and updated when 10% of a search's tasks are new to it: those updates
    are counted, and timed with the rest."""
    t = time.perf_counter()
    memory_model(store, SPACE, None, "new", 0, None)
    train_s = time.perf_counter() - t
    weights = next(Path(path, "models").glob("*.safetensors"))
    plans: dict[str, list[float]] = {"newest": [], "nearest": []}
    updates = 0
    for i in range(5):
        for kind in plans:
            near = searched_centre + 0.35 * rng.standard_normal(len(searched_centre)).astype(np.float32)
            given = ("bench", near) if kind == "nearest" else None
            stamp = weights.stat().st_mtime_ns
            t = time.perf_counter()
            _, model = memory_model(store, SPACE, None, f"new{i}", i, given)
            model.suggest([], [])
            plans[kind].append((time.perf_counter() - t) * 1000)
            updates += weights.stat().st_mtime_ns != stamp
    return train_s, plans, updates
