"""`metanas.search`: one search on a new task, warm-started from the task memory.

    result = metanas.search(objective, space, task_id="t7", memory="mem/", budget=50)

With a precomputed `embedding` (e.g. dataset meta-features) the most similar past tasks
are retrieved from the FAISS index. For a black-box objective, the `memory` policy probes
the task with the memory's portfolio (those evaluations count in the budget and are trials
of the search), weights every past task of the same space by how well its trials rank the
probes, and warm-starts from their weighted trials (`metanas.memory.policies`). Then it
searches and appends the result to the memory (idempotent by key, so a retried search
never duplicates a record).

With `objectives={"val_acc": "max", "latency_ms": "min"}` the objective returns a dict of
metrics and the search is multi-objective (Optuna's multi-objective TPE, or NSGA-II with
`searcher="nsga2"`); `constraints={"latency_ms": 5.0}` bounds a metric (at most it for a
minimised one, at least it for a maximised one). It warm-starts from the stored tasks'
Pareto sets (`warm_start="pareto"`), stores every metric of every trial, and the result's
`pareto` holds the front.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from metanas.memory.embedders import LandmarkEmbedder, estimated_landmarks
from metanas.memory.records import PastTask
from metanas.memory.sampler import top_tasks
from metanas.memory import policies
from metanas.memory.warmstart import memory_model, past_tasks
from metanas.searchers.base import Objective, SearchInterrupted, SearchResult, Trial, WarmStart
from metanas.searchers.space import SearchSpace

MULTI_OBJECTIVE_SEARCHERS = {"optuna": "tpe", "nsga2": "nsga2", "random": "random"}

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
    warm_start: str | None = None,
    embedder: LandmarkEmbedder | None = None,
    embedding: tuple[str, Sequence[float]] | None = None,
    family: str = "default",
    k: int = 5,
    n_warm_start: int = 5,
    seed: int = 0,
    campaign_id: str = "",
    key: str | None = None,
    objectives: Mapping[str, str] | None = None,
    constraints: Mapping[str, float] | None = None,
    storage: str | None = None,
    fail_fast: bool = False,
) -> SearchResult:
    """Search `space` for the config that maximises `objective` on one task (or, with
    `objectives`, for the Pareto front of several metrics: see the module's docstring).
    An evaluation that raises is a failed trial (logged) and the search goes on, unless
    `fail_fast`; Ctrl-C raises `SearchInterrupted` with the finished evaluations, which a
    memory keeps under the search's key plus '/interrupted'. The key holds the budget, so
    a rerun with another budget is a record of its own.
    `storage` (Optuna searchers): record the study in this Optuna storage, e.g.
    "sqlite:///searches.db", named after `task_id`, for `optuna-dashboard`.

    `warm_start`: `model` (default: the memory's cross-task model proposes each early
    evaluation and re-weights the stored tasks as results arrive; Optuna or Ray Tune),
    `memory` (probe with the portfolio, warm-start from similar tasks' trials), `portfolio`
    or `none`. `embedding=(name, vector)` uses a precomputed task embedding (for `memory`,
    its nearest neighbours); an explicit landmark `embedder` is evaluated on the task and
    embeds it; otherwise the record's embedding is estimated from the search's own trials
    (no extra evaluation). Returns the searcher's result, probe evaluations included among
    its trials. Raises `SearchFailed` (trials attached, memory untouched) when every
    evaluation failed."""
    if objectives is not None or constraints is not None:
        return _multi_objective(
            objective, space, objectives, constraints, task_id=task_id, memory=memory, budget=budget, searcher=searcher,
            warm_start=warm_start or policies.MULTI_OBJECTIVE_DEFAULT, embedding=embedding, family=family, k=k, seed=seed,
            campaign_id=campaign_id, key=key, storage=storage, fail_fast=fail_fast,
        )
    warm_start = warm_start or policies.DEFAULT
    policy = policies.get(warm_start)
    _check_task_and_budget(task_id, budget)
    if searcher not in SEARCHERS:
        raise ValueError(f"searcher: expected one of {SEARCHERS}, got {searcher!r}")
    if storage is not None and searcher != "optuna":
        raise ValueError(f"storage: Optuna storages record searcher='optuna' searches, not {searcher!r}")
    if policy.needs_sampler and searcher == "random":
        raise ValueError(f"warm_start={warm_start!r} proposes configs through Optuna: use searcher='optuna' or 'tune'")
    obj = Objective(objective, fail_fast)  # an evaluation that raises is a failed trial unless fail_fast
    store = None
    if memory is not None:
        from metanas.memory.store import MemoryStore

        store = MemoryStore(Path(memory))
    family_filter = None if family == "default" else family
    told: list[WarmStart] = []
    vector = None
    if embedding is not None:
        embedder_name, vector = embedding[0], np.asarray(embedding[1], dtype=np.float32)
    elif embedder is not None:  # explicit landmarks: evaluated on the task, they embed it
        if len(embedder.probes) >= budget:
            raise ValueError(f"budget {budget} leaves nothing after {len(embedder.probes)} landmark probes")
        vector, scores = embedder.embed_with_scores(obj)
        embedder_name = embedder.name
        told = [WarmStart(space.validate(p), s) for p, s in zip(embedder.probes, scores)]
    past, model = memory_model(store if policy.uses_memory else None, space, family_filter, task_id, seed,
                               (embedder_name, vector) if embedding is not None else None, policy.neighbours(k))
    start = policies.Start(space, past, model, obj, budget, told, by_embedding=embedding is not None, n_warm=n_warm_start, seed=seed)
    plan = policy.plan(start)
    log.info("task %s: %d probes, %d warm-start configs (%d did not fit the space)", task_id, len(plan.told), len(plan.queued), plan.dropped)

    options: dict[str, Any] = {"storage": storage, "study_name": task_id} if storage is not None else {}
    sampler = policy.sampler(start)
    if sampler is not None:
        options["sampler"] = sampler
    key = key or f"{campaign_id or 'search'}/{task_id}/{searcher}/{warm_start}/{seed}/b{budget}"
    try:
        result = make_searcher(searcher, seed, **options).search(obj, space, budget - len(plan.told), warm_start=plan.warm_start)
    except KeyboardInterrupt:
        finished = [Trial(ws.config, ws.score, None, "probe") for ws in plan.told] + obj.history
        kept = _store_interrupted(store, finished, space, task_id, family, searcher, campaign_id, key)
        raise SearchInterrupted(finished, kept) from None
    if obj.errors:
        log.warning("task %s: %d of %d evaluations raised (the first: %s)", task_id, len(obj.errors), len(result.evaluated), obj.errors[0][1])
    # The probes were evaluated here, for this task: they are trials of this search.
    result.trials = [Trial(t.config, t.score, t.budget, "probe") if t.source == "known" else t for t in result.trials]
    result.warm_start_dropped += plan.dropped
    result.trials = explained(result.trials, policy, searcher, plan, options.get("sampler"))

    if store is not None:  # (raises SearchFailed when every evaluation failed: nothing to remember)
        given = (embedder_name, vector) if embedding is not None or embedder is not None else None
        _remember(store, key, task_id, family, space, result.trials, searcher, campaign_id, given)
    return result


def _check_task_and_budget(task_id: str, budget: Any) -> None:
    if not task_id:
        raise ValueError("task_id: required, so the memory can tell tasks apart")
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget: must be a positive number of evaluations, got {budget!r}")


def _remember(store: Any, key: str, task_id: str, family: str, space: SearchSpace, trials: Sequence[Trial], searcher: str,
              campaign_id: str, embedding: tuple[str, Any] | None = None) -> str:
    """Append a search's record to the memory: its best trial, every trial, and its
    embedding (`(embedder, vector)` given, or estimated from the trials). Raises
    SearchFailed when no trial succeeded. A key already stored is logged, not added."""
    from metanas.memory.records import TaskRecord

    best = SearchResult(searcher, list(trials)).best
    dicts = [t.to_dict() for t in trials]
    name, vector = embedding if embedding is not None else estimated_landmarks(space, dicts)
    record = TaskRecord(
        key=key, task_id=task_id, family=family, embedder=name, embedding=vector, space_signature=space.signature,
        best_config=best.config, best_score=best.score, trials=dicts, searcher=searcher, campaign_id=campaign_id,
        created_at=time.time(), space=space.to_spec(),
    )
    if not store.append([record]):  # (idempotent: a retried search never duplicates a record)
        log.warning("the memory already holds %r (the same search, same budget and seed): not added again", key)
    return key


def _store_interrupted(store, finished: list[Trial], space: SearchSpace, task_id: str, family: str, searcher: str,
                       campaign_id: str, key: str) -> str | None:
    """Keep an interrupted search's finished evaluations in the memory, under its key plus
    '/interrupted'; the key, or None when there is no memory or nothing finished."""
    if store is None or not any(np.isfinite(t.score) for t in finished):
        return None
    return _remember(store, f"{key}/interrupted", task_id, family, space, finished, searcher, campaign_id)


def propose(
    space: SearchSpace,
    memory: str | Path,
    *,
    task_id: str = "",
    embedding: tuple[str, Sequence[float]] | None = None,
    n: int = 5,
    family: str | None = None,
    seed: int = 0,
) -> list[tuple[dict[str, Any], float, float]]:
    """The memory's zero-shot proposal for a task never seen: `n` configs chosen greedily
    for the expected best over the stored tasks of `space`, each with the cross-task
    surrogate's predicted normalised rank (1 = a task's best) and its uncertainty (the
    ensemble's spread). With `embedding=(embedder, vector)` (the embedder the stored
    records use) the stored tasks are weighted by their similarity to that task and the
    predictions are for it. `task_id`'s own records, if any, are left out."""
    from metanas.memory.store import MemoryStore

    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: must be a positive number of configs, got {n!r}")
    if not Path(memory).is_dir():
        raise ValueError(f"memory: {str(memory)!r} is not a memory directory")
    store = MemoryStore(Path(memory))
    given = None if embedding is None else (embedding[0], np.asarray(embedding[1], dtype=np.float32))
    _, model = memory_model(store, space, family, task_id, seed, given)
    return model.portfolio(n)


def _multi_objective(
    objective: Callable[..., Mapping[str, float]],
    space: SearchSpace,
    objectives: Mapping[str, str] | None,
    constraints: Mapping[str, float] | None,
    *,
    task_id: str,
    memory: str | Path | None,
    budget: int,
    searcher: str,
    warm_start: str,
    embedding: tuple[str, Sequence[float]] | None,
    family: str,
    k: int,
    seed: int,
    campaign_id: str,
    key: str | None,
    storage: str | None = None,
    fail_fast: bool = False,
) -> SearchResult:
    """`search` with several objectives: warm start from the stored Pareto sets, Optuna's
    multi-objective sampler, every metric stored."""
    from metanas.searchers.multi_objective import MultiObjective, multi_objective_search

    if objectives is None:
        raise ValueError("constraints: bound metrics of a multi-objective search; pass objectives= too")
    mo = MultiObjective(objective, objectives, constraints, fail_fast)  # checks objectives and constraints
    policy = policies.get(warm_start, multi_objective=True)
    if searcher not in MULTI_OBJECTIVE_SEARCHERS:
        raise ValueError(f"searcher: a multi-objective search takes one of {tuple(MULTI_OBJECTIVE_SEARCHERS)}, got {searcher!r}")
    _check_task_and_budget(task_id, budget)
    store = None
    if memory is not None:
        from metanas.memory.store import MemoryStore

        store = MemoryStore(Path(memory))
    family_filter = None if family == "default" else family
    past: list[PastTask] = []
    if store is not None and policy.uses_memory:
        if embedding is not None:
            vector = np.asarray(embedding[1], dtype=np.float32)
            hits = store.nearest(vector, k, space.signature, embedding[0], family=family_filter)
            past = [PastTask(r.task_id, r.trials, sim) for r, sim in hits if r.task_id != task_id]
        else:  # the newest first
            past = list(reversed(past_tasks(store, space, family_filter, task_id)))
    plan = policy.plan(policies.Start(space, past, objectives=mo.objectives, constraints=mo.constraints, seed=seed))
    log.info("task %s: %d warm-start configs from stored Pareto sets", task_id, len(plan.queued))
    result = multi_objective_search(mo, space, budget, plan.queued, MULTI_OBJECTIVE_SEARCHERS[searcher], seed, storage, task_id)
    origins = iter(plan.origins)
    goals = dict(mo.objectives)  # (kept with every trial, so a stored search can be drawn again)
    result.trials = [
        replace(t, why={"source": "pareto set", "task": next(origins), "objectives": goals} if t.source == "warm_start"
                else {"source": f"{searcher} (multi-objective)", "objectives": goals})
        for t in result.trials
    ]
    if store is not None:  # (raises SearchFailed when no trial was feasible: nothing to remember)
        key = key or f"{campaign_id or 'search'}/{task_id}/{searcher}/{warm_start}/{seed}/b{budget}/" + ",".join(mo.objectives)
        given = (embedding[0], np.asarray(embedding[1], dtype=np.float32)) if embedding is not None else None
        _remember(store, key, task_id, family, space, result.trials, f"{searcher}_multi_objective", campaign_id, given)
    return result


def explained(trials: list[Trial], policy: policies.WarmStartPolicy, searcher: str, plan: Any, sampler: Any) -> list[Trial]:
    """Each evaluated trial with its `why`: the probe, warm start or model proposal it was,
    and the stored tasks behind it with their weights (`metanas explain` draws them)."""
    proposals = list(getattr(sampler, "history", []))
    task_ids = [t.task_id for t in sampler.model.tasks] if sampler is not None and sampler.model is not None else []
    similarity = top_tasks(plan.similarity)
    out, proposed = [], 0
    for t in trials:
        if t.source == "probe":
            why = {"source": "probe", "tasks": similarity}
        elif t.source == "warm_start":
            why = {"source": f"{policy.name} warm start", "tasks": similarity}
        elif policy.needs_sampler and proposed < len(proposals):
            p = proposals[proposed]
            proposed += 1
            why = {"source": f"memory model ({p.source})", "evaluations_before": sum(o.source != "known" for o in out),
                   "tasks": top_tasks(dict(zip(task_ids, p.weights.tolist())))}
        else:
            why = {"source": "tpe" if policy.needs_sampler else searcher}  # (the model's sampler hands over to TPE)
        out.append(replace(t, why=why))
    return out
