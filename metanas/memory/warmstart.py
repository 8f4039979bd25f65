"""Warm-start planning: which configs a new task's search evaluates first.

`plan_warm_start` is the one entry point (used by `metanas.search` and by `metanas bench
warmstart`, so what is measured is what users get). Its policies (`model`, the default,
plans nothing here: its `MemorySampler` chooses every evaluation, see `transfer`):
- `memory`, black box: probe the task with the memory's portfolio, weight every stored task
  by how well its own trials rank the probes, warm-start from every weighted trial;
- `memory`, with neighbours found by embedding (FAISS): the portfolio of those neighbours,
  each weighted by its similarity to the task;
- `portfolio`: configs good across all stored tasks, ignoring similarity (a baseline);
- `none`.
Configs are validated and deduplicated by `fit_warm_start`, the searchers' own check:
what does not fit the space is dropped and counted, never passed on.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from metanas.memory.records import PastTask
from metanas.memory.surrogate import finite_trials, knn_surrogate
from metanas.searchers.stats import spearman
from metanas.memory.transfer import MODEL_TASKS, MemoryModel
from metanas.searchers.base import WarmStart, fit_warm_start
from metanas.searchers.space import SearchSpace, config_key

POLICIES = ("model", "memory", "portfolio", "none")
N_PROBES = 5  # measured on NAS-Bench-201 and HPOBench: 5 beat 3 probes and the plain portfolio
MAX_PAST_TASKS = 500  # the most recent same-space records a black-box warm start weighs


@dataclass
class WarmStartPlan:
    """What a search starts from. `told` were evaluated on this task already (probes: they
    count in its budget and are told to the searcher with their scores); `queued` are
    evaluated first, best first."""

    told: list[WarmStart] = field(default_factory=list)
    queued: list[WarmStart] = field(default_factory=list)
    dropped: int = 0  # proposed configs that did not fit the space
    similarity: dict[str, float] = field(default_factory=dict)  # stored task -> weight in [0, 1]

    @property
    def warm_start(self) -> list[WarmStart]:
        return self.told + self.queued


def holds(stored: SearchSpace, space: SearchSpace) -> bool:
    """Whether a stored space has every parameter of `space`, defined the same way."""
    return all(p.name in stored.names and stored[p.name] == p for p in space.params)


def matching_signatures(store: Any, space: SearchSpace, family: str | None = None, exclude_task: str | None = None) -> list[str]:
    """The signatures of the stored spaces whose records a search of `space` learns from:
    its own, and every space that holds its parameters (their trials seen through `space`)."""
    out = [space.signature]
    for signature, spec, _ in store.spaces(family, exclude_task):
        if signature != space.signature and spec is not None and holds(SearchSpace.from_spec(spec), space):
            out.append(signature)
    return out


def projected(trials: Sequence[dict[str, Any]], space: SearchSpace) -> list[dict[str, Any]]:
    """Stored trials as configs of `space` (the parameters it has; a trial without one of
    them is left out)."""
    names = space.names
    return [{**t, "config": {n: t["config"][n] for n in names}} for t in trials if all(n in t["config"] for n in names)]


def past_tasks(store: Any, space: SearchSpace, family: str | None, exclude_task: str, with_embeddings: bool = False) -> list[PastTask]:
    """The newest `MAX_PAST_TASKS` records of `space`, or of a space that holds its
    parameters (and of `family`, if given), in `store`, other than `exclude_task`'s own.
    `with_embeddings`: each with its embedding, when it is of the embedder most of them
    share (embeddings of two embedders do not compare)."""
    signatures = matching_signatures(store, space, family, exclude_task)
    records = store.records(space_signature=signatures, family=family, exclude_task=exclude_task, newest=MAX_PAST_TASKS)
    trials = [r.trials if r.space_signature == space.signature else projected(r.trials, space) for r in records]
    if not with_embeddings or not records:
        return [PastTask(r.task_id, t) for r, t in zip(records, trials)]
    common = Counter(r.embedder for r in records).most_common(1)[0][0]
    return [PastTask(r.task_id, t, embedding=r.embedding if r.embedder == common else None, embedder=common)
            for r, t in zip(records, trials)]


def memory_model(store: Any, space: SearchSpace, warm_start: str, family: str | None, task_id: str, seed: int, k: int,
                  embedding: tuple[str, np.ndarray] | None) -> tuple[list[PastTask], MemoryModel | None]:
    """The stored tasks a warm start learns from and the memory's model of them (its
    surrogate kept in the memory), or ([], None) without a memory. With the new task's
    `embedding`, the `memory` policy learns from its k nearest neighbours (FAISS), and
    every policy weights the stored tasks by similarity until the task's own results do."""
    if store is None or warm_start == "none":
        return [], None
    if embedding is not None:  # the nearest: k of them for `memory`, as many as the model weighs otherwise
        n = k if warm_start == "memory" else MODEL_TASKS
        hits = store.nearest(embedding[1], n + 1, space.signature, embedding[0], family=family)
        past = [PastTask(r.task_id, r.trials, sim, r.embedding, r.embedder) for r, sim in hits if r.task_id != task_id][:n]
        stored = store.records(space_signature=space.signature, family=family, newest=1) if not hits else []
        if stored and stored[0].embedder != embedding[0]:
            raise ValueError(f"embedding: the memory's records of this space use {stored[0].embedder!r}, not {embedding[0]!r}")
    else:
        past = past_tasks(store, space, family, task_id, with_embeddings=True)
    stored_embedder = past[0].embedder if past else ""
    vector = embedding[1] if embedding is not None else None
    # (the black-box `memory` policy weighs all of `past`; its model, the newest MODEL_TASKS.
    # The surrogate also trains on the newest records: `past` already, or read when it trains.)
    recent = (lambda: past) if embedding is None else (lambda: past_tasks(store, space, family, task_id, with_embeddings=True))
    return past, MemoryModel(space, past[-MODEL_TASKS:], seed, directory=store.path, embedder=stored_embedder,
                             embedding=vector, more=recent)


def plan_warm_start(
    policy: str,
    space: SearchSpace,
    past: Sequence[PastTask],
    objective: Callable[[dict[str, Any]], float] | None = None,
    budget: int | None = None,
    n_warm: int = 5,
    told: Sequence[WarmStart] = (),
    by_embedding: bool = False,
    model: MemoryModel | None = None,
) -> WarmStartPlan:
    """Plan a search's first evaluations. `past` holds the stored tasks to learn from (with
    their similarity when `by_embedding`); `told` are evaluations this task already paid for
    (e.g. landmark probes). The black-box `memory` policy evaluates up to `N_PROBES` probes
    with `objective`, always leaving at least one evaluation of `budget` to the search.
    `model`: the memory's model of `past`, when the caller has built it already."""
    if policy not in POLICIES:
        raise ValueError(f"warm_start: expected one of {POLICIES}, got {policy!r}")
    plan = WarmStartPlan(told=list(told))
    if policy in ("none", "model") or not past:  # (`model` transfers inside its sampler)
        return plan
    if policy == "portfolio":
        plan.queued, plan.dropped = portfolio(space, past, n_warm, model)
    elif by_embedding:  # the neighbours' portfolio, weighted by their similarity to the task
        plan.queued, plan.dropped = portfolio(space, past, n_warm, model)
        plan.similarity = {t.task_id: t.similarity for t in past}
    else:
        if objective is None:
            raise ValueError("the memory policy needs the objective to probe the task with")
        room = N_PROBES if budget is None else budget - len(plan.told) - 1
        _probe_and_rank(plan, space, past, objective, min(N_PROBES, room), n_warm, model)
    return plan


def normalised_scores(trials: Sequence[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], float]]:
    """Per-task normalisation: median -> 0, best -> 1 (clipped below at -1), so tasks with
    different score scales can be averaged."""
    finite = finite_trials(trials)
    if not finite:
        return {}
    scores = np.asarray([t["score"] for t in finite], dtype=np.float64)
    med, best = float(np.median(scores)), float(scores.max())
    span = best - med if best > med else 1.0
    out: dict[str, tuple[dict[str, Any], float]] = {}
    for t in finite:
        key = config_key(t["config"])
        value = max(-1.0, (t["score"] - med) / span)
        if key not in out or value > out[key][1]:
            out[key] = (t["config"], value)
    return out


def rank_configs(past: Sequence[PastTask], similarity_power: float = 2.0) -> list[tuple[dict[str, Any], float]]:
    """Configs from every trial of `past`, ordered by similarity-weighted normalised score.

    A config evaluated on several tasks averages them (weights = similarity^power, plus a
    small floor so dissimilar tasks still count a little, as a portfolio would)."""
    total: dict[str, float] = defaultdict(float)
    weight: dict[str, float] = defaultdict(float)
    configs: dict[str, dict[str, Any]] = {}
    for task in past:
        w = max(task.similarity, 0.0) ** similarity_power + 0.05
        for key, (config, value) in normalised_scores(task.trials).items():
            total[key] += w * value
            weight[key] += w
            configs[key] = config
    # Shrink single-task evidence towards 0: one lucky evaluation is weaker than many.
    ranked = sorted(configs, key=lambda k: -(total[k] / (weight[k] + 0.05)))
    return [(configs[k], total[k] / (weight[k] + 0.05)) for k in ranked]


def select_warm_start(
    space: SearchSpace, ranked: Sequence[tuple[dict[str, Any], float]], n: int
) -> tuple[list[WarmStart], int]:
    """The best `n` distinct configs that fit `space`; returns (warm start, dropped count)."""
    return fit_warm_start(space, [WarmStart(config, None, score) for config, score in ranked], limit=n)


def portfolio(space: SearchSpace, past: Sequence[PastTask], n: int, model: MemoryModel | None = None) -> tuple[list[WarmStart], int]:
    """`n` configs for the expected best over the stored tasks: the cross-task surrogate's
    greedy portfolio (`MemoryModel.portfolio`). Stored tasks of a single trial each (as a
    campaign's DARTS records) train no surrogate: then the configs good on most tasks."""
    model = model or MemoryModel(space, past)
    if model.tasks:
        return [WarmStart(config, None, predicted) for config, predicted, _ in model.portfolio(n)], 0
    flat = [PastTask(t.task_id, t.trials, 0.0) for t in past]
    return select_warm_start(space, rank_configs(flat), n)


def _probe_and_rank(
    plan: WarmStartPlan,
    space: SearchSpace,
    past: Sequence[PastTask],
    objective: Callable[[dict[str, Any]], float],
    n_probes: int,
    n_warm: int,
    model: MemoryModel | None = None,
) -> None:
    """The `memory` policy for black-box objectives.

    1. Probe the new task with the memory's portfolio (configs good across stored tasks, so
       no probe is a wasted evaluation). 2. Weight every stored task by how well its own
       trials rank those probes (Spearman of its surrogate vs the observed scores): a task
       that ranks them the opposite way gets weight ~0, which guards against negative
       transfer. 3. Warm-start from every stored trial, weighted that way."""
    probes, dropped = portfolio(space, past, max(0, n_probes), model)
    configs = [p.config for p in probes]
    scores = [float(objective(c)) for c in configs]
    weighted = []
    for task in past:
        sim = 0.5
        if len(configs) > 1 and finite_trials(task.trials):
            predict = knn_surrogate(space, task.trials)
            sim = (1.0 + spearman(scores, [predict(c) for c in configs])) / 2.0
        plan.similarity[task.task_id] = sim
        weighted.append(PastTask(task.task_id, task.trials, sim))
    probed = {config_key(c) for c in configs}
    ranked = [(c, v) for c, v in rank_configs(weighted, similarity_power=4.0) if config_key(c) not in probed]
    plan.queued, more_dropped = select_warm_start(space, ranked, n_warm)
    plan.told += [WarmStart(c, s) for c, s in zip(configs, scores)]
    plan.dropped = dropped + more_dropped
