"""`metanas.search`: one search on a new task, warm-started from the task memory.

    result = metanas.search(objective, space, task_id="t7", memory="mem/", budget=50)

Embeds the task (landmark probes by default: their evaluations count in the budget and are
trials of the search), retrieves the most similar past tasks of the same space and
embedder, warm-starts the searcher with what they learned, searches, and appends the
result to the memory (idempotent by key, so a retried search never duplicates a record).
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from metanas.memory.embedders import LandmarkEmbedder
from metanas.memory.warmstart import POLICIES, PastTask, memory_warm_start, portfolio
from metanas.platform.space import SearchSpace
from metanas.searchers.base import Objective, SearchResult, Trial, WarmStart

log = logging.getLogger(__name__)

SEARCHERS = ("optuna", "tune", "random")


def make_searcher(name: str, seed: int, **options: Any):
    if name == "optuna":
        from metanas.searchers.optuna_search import OptunaSearcher

        return OptunaSearcher(seed=seed, **options)
    if name == "tune":
        from metanas.searchers.tune_search import TuneSearcher

        return TuneSearcher(seed=seed, **options)
    if name == "random":
        from metanas.searchers.random_search import RandomSearcher

        return RandomSearcher(seed=seed)
    raise ValueError(f"searcher: expected one of {SEARCHERS}, got {name!r}")


def default_probes(space: SearchSpace, n: int = 3) -> list[dict[str, Any]]:
    """Fixed probe configs of a space (derived from its signature, so every search in the
    space probes the same configs and their landmark embeddings are comparable)."""
    rng = random.Random(int(space.signature, 16))
    return [space.sample(rng) for _ in range(n)]


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

    `embedding=(name, vector)` uses a precomputed task embedding (e.g. meta-features) and
    spends no evaluation on probes; otherwise a landmark `embedder` (default: 3 fixed probe
    configs of the space) is evaluated on the task. Returns the searcher's result, with the
    probe evaluations among its trials."""
    if warm_start not in POLICIES:
        raise ValueError(f"warm_start: expected one of {POLICIES}, got {warm_start!r}")
    if not task_id:
        raise ValueError("task_id: required, so the memory can tell tasks apart")
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget: must be a positive number of evaluations, got {budget!r}")
    obj = Objective(objective)
    store = None
    if memory is not None:
        from metanas.memory.store import MemoryStore

        store = MemoryStore(Path(memory))
    known: list[WarmStart] = []
    if embedding is not None:
        embedder_name, vector = embedding[0], np.asarray(embedding[1], dtype=np.float32)
    else:
        embedder = embedder or LandmarkEmbedder(default_probes(space))
        if len(embedder.probes) >= budget:
            raise ValueError(f"budget {budget} leaves nothing after {len(embedder.probes)} landmark probes")
        vector, scores = embedder.embed(obj)
        embedder_name = embedder.name
        known = [WarmStart(space.validate(p), s) for p, s in zip(embedder.probes, scores)]

    warm: list[WarmStart] = []
    dropped = 0
    if store is not None and warm_start != "none":
        if warm_start == "memory":
            hits = store.nearest(vector, k, space.signature, embedder_name, family=None if family == "default" else family)
            past = [PastTask(r.task_id, r.trials, sim) for r, sim in hits if r.task_id != task_id]
            warm, dropped = memory_warm_start(space, past, n_warm_start)
        else:
            past = [PastTask(r.task_id, r.trials) for r in store.records(space_signature=space.signature)]
            warm, dropped = portfolio(space, past, n_warm_start)
        log.info("task %s: %d warm-start configs from the memory (%d did not fit the space)", task_id, len(warm), dropped)

    inner_budget = budget - len(known)
    result = make_searcher(searcher, seed).search(obj, space, inner_budget, warm_start=known + warm)
    # The probes were evaluated here, for this task: they are trials of this search.
    result.trials = [Trial(t.config, t.score, t.budget, "probe") if t.source == "known" else t for t in result.trials]
    result.warm_start_dropped += dropped

    if store is not None:
        from metanas.memory.records import TaskRecord

        best = result.best
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
