"""`metanas.search`: one search on a new task, warm-started from the task memory.

    result = metanas.search(objective, space, task_id="t7", memory="mem/", budget=50)

With a precomputed `embedding` (e.g. dataset meta-features) the most similar past tasks
are retrieved from the FAISS index. For a black-box objective, the `memory` policy probes
the task with the memory's portfolio (those evaluations count in the budget and are trials
of the search), weights every past task of the same space by how well its trials rank the
probes, and warm-starts from their weighted trials (`metanas.memory.warmstart`). Then it
searches and appends the result to the memory (idempotent by key, so a retried search
never duplicates a record).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from metanas.memory.embedders import LandmarkEmbedder, estimated_landmarks
from metanas.memory.warmstart import POLICIES, PastTask, past_tasks, plan_warm_start
from metanas.searchers.base import Objective, SearchResult, Trial, WarmStart
from metanas.searchers.space import SearchSpace

log = logging.getLogger(__name__)

SEARCHERS = ("optuna", "tune", "random")


def make_searcher(name: str, seed: int, **options: Any):
    if name == "optuna":
        from metanas.searchers.optuna_search import OptunaSearcher

        return OptunaSearcher(seed=seed, **options)
    if name == "tune":
        from metanas.cluster.tune_search import TuneSearcher

        return TuneSearcher(seed=seed, **options)
    if name == "random":
        from metanas.searchers.random_search import RandomSearcher

        return RandomSearcher(seed=seed, **options)
    raise ValueError(f"searcher: expected one of {SEARCHERS}, got {name!r}")


def search(
    objective: Callable[..., float],
    space: SearchSpace,
    *,
    task_id: str,
    memory: str | Path | None = None,
    budget: int = 50,
    searcher: str = "optuna",
    warm_start: str = "memory",
    embedder: LandmarkEmbedder | None = None,
    embedding: tuple[str, Sequence[float]] | None = None,
    family: str = "default",
    k: int = 5,
    n_warm_start: int = 5,
    seed: int = 0,
    campaign_id: str = "",
    key: str | None = None,
) -> SearchResult:
    """Search `space` for the config that maximises `objective` on one task.

    `embedding=(name, vector)` uses a precomputed task embedding; an explicit landmark
    `embedder` is evaluated on the task and embeds it; otherwise the record's embedding is
    estimated from the search's own trials (no extra evaluation). Returns the searcher's
    result, probe evaluations included among its trials."""
    if warm_start not in POLICIES:
        raise ValueError(f"warm_start: expected one of {POLICIES}, got {warm_start!r}")
    if not task_id:
        raise ValueError("task_id: required, so the memory can tell tasks apart")
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget: must be a positive number of evaluations, got {budget!r}")
    if searcher not in SEARCHERS:
        raise ValueError(f"searcher: expected one of {SEARCHERS}, got {searcher!r}")
    obj = Objective(objective)
    store = None
    if memory is not None:
        from metanas.memory.store import MemoryStore

        store = MemoryStore(Path(memory))
    family_filter = None if family == "default" else family
    told: list[WarmStart] = []
    past: list[PastTask] = []
    if embedding is not None:
        # A precomputed embedding (e.g. dataset meta-features): FAISS finds the neighbours.
        embedder_name, vector = embedding[0], np.asarray(embedding[1], dtype=np.float32)
        if store is not None and warm_start != "none":
            hits = store.nearest(vector, k, space.signature, embedder_name, family=family_filter)
            past = [PastTask(r.task_id, r.trials, sim) for r, sim in hits if r.task_id != task_id]
    else:
        if store is not None and warm_start != "none":
            past = past_tasks(store, space, family_filter, task_id)
        if embedder is not None:  # explicit landmarks: evaluated on the task, they embed it
            if len(embedder.probes) >= budget:
                raise ValueError(f"budget {budget} leaves nothing after {len(embedder.probes)} landmark probes")
            vector, scores = embedder.embed_with_scores(obj)
            embedder_name = embedder.name
            told = [WarmStart(space.validate(p), s) for p, s in zip(embedder.probes, scores)]
    plan = plan_warm_start(
        warm_start, space, past, obj, budget, n_warm=n_warm_start, told=told, by_embedding=embedding is not None
    )
    log.info("task %s: %d probes, %d warm-start configs (%d did not fit the space)", task_id, len(plan.told), len(plan.queued), plan.dropped)

    result = make_searcher(searcher, seed).search(obj, space, budget - len(plan.told), warm_start=plan.warm_start)
    # The probes were evaluated here, for this task: they are trials of this search.
    result.trials = [Trial(t.config, t.score, t.budget, "probe") if t.source == "known" else t for t in result.trials]
    result.warm_start_dropped += plan.dropped

    if store is not None:
        from metanas.memory.records import TaskRecord

        best = result.best  # raises when every evaluation failed: nothing to remember
        if embedding is None and embedder is None:
            embedder_name, vector = estimated_landmarks(space, [t.to_dict() for t in result.trials])
        record = TaskRecord(
            key=key or f"{campaign_id or 'search'}/{task_id}/{searcher}/{warm_start}/{seed}",
            task_id=task_id,
            family=family,
            embedder=embedder_name,
            embedding=vector,
            space_signature=space.signature,
            best_config=best.config,
            best_score=best.score,
            trials=[t.to_dict() for t in result.trials],
            searcher=searcher,
            campaign_id=campaign_id,
            created_at=time.time(),
        )
        store.append([record])
    return result
