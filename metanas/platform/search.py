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

A search runs in named steps (`_Search`): check the arguments, open the memory, embed the
task, plan the warm start with the policy, run the searcher (Ctrl-C keeps what finished),
label every trial with why it was evaluated, and remember the record. The single- and the
multi-objective search share every step but the plan and the searcher.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from metanas.memory import policies
from metanas.memory.embedders import LandmarkEmbedder, estimated_landmarks
from metanas.memory.past_tasks import memory_model, past_tasks
from metanas.memory.records import PastTask
from metanas.memory.sampler import top_tasks
from metanas.searchers.base import Objective, SearchInterrupted, SearchResult, Trial, WarmStart
from metanas.searchers.space import SearchSpace

if TYPE_CHECKING:
    from metanas.memory.store import TaskMemory

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
    request = _Search(**locals())  # (every argument of this call, by name)
    return request.multi_objective() if request.is_multi_objective else request.single_objective()


@dataclass
class _Search:
    """One call of `search`: its arguments, and the steps it runs in."""

    objective: Callable[..., Any]
    space: SearchSpace
    task_id: str
    memory: str | Path | None
    budget: int
    searcher: str
    warm_start: str | None
    embedder: LandmarkEmbedder | None
    embedding: tuple[str, Sequence[float]] | None
    family: str
    k: int
    n_warm_start: int
    seed: int
    campaign_id: str
    key: str | None
    objectives: Mapping[str, str] | None
    constraints: Mapping[str, float] | None
    storage: str | None
    fail_fast: bool

    @property
    def is_multi_objective(self) -> bool:
        return self.objectives is not None or self.constraints is not None

    @property
    def family_filter(self) -> str | None:
        return None if self.family == "default" else self.family

    @property
    def given_embedding(self) -> tuple[str, np.ndarray] | None:
        """The caller's `(embedder, vector)`, or None."""
        if self.embedding is None:
            return None
        return self.embedding[0], np.asarray(self.embedding[1], dtype=np.float32)

    def record_key(self, policy: str, suffix: str = "") -> str:
        """The record's key: the same search (budget and seed included) has the same key, so
        a retried one never duplicates its record."""
        parts = (
            self.campaign_id or "search",
            self.task_id,
            self.searcher,
            policy,
            self.seed,
            f"b{self.budget}",
        )
        return self.key or "/".join(map(str, parts)) + suffix

    def single_objective(self) -> SearchResult:
        policy = self._checked_policy()
        # an evaluation that raises is a failed trial unless fail_fast
        obj = Objective(self.objective, self.fail_fast)
        store = open_memory(self.memory)
        task_embedding, told = self._task_embedding(obj)
        start = self._start(policy, store, obj, told)
        plan, sampler = policy.plan(start), policy.sampler(start)
        log.info(
            "task %s: %d probes, %d warm-start configs (%d did not fit the space)",
            self.task_id,
            len(plan.told),
            len(plan.queued),
            plan.dropped,
        )
        key = self.record_key(policy.name)
        result = self._run_searcher(obj, plan, sampler, store, key)
        # The probes were evaluated here, for this task: they are trials of this search.
        result.trials = [
            Trial(t.config, t.score, t.budget, "probe") if t.source == "known" else t for t in result.trials
        ]
        result.warm_start_dropped += plan.dropped
        result.trials = explained(result.trials, policy, self.searcher, plan, sampler)
        if store is not None:  # (raises SearchFailed when every evaluation failed: nothing to remember)
            self._remember(store, key, result.trials, self.searcher, task_embedding)
        return result

    def _checked_policy(self) -> policies.WarmStartPolicy:
        """The warm-start policy, once every argument of a single-objective search is checked."""
        warm_start = self.warm_start or policies.DEFAULT
        policy = policies.get(warm_start)
        _check_task_and_budget(self.task_id, self.budget)
        if self.searcher not in SEARCHERS:
            raise ValueError(f"searcher: expected one of {SEARCHERS}, got {self.searcher!r}")
        if self.storage is not None and self.searcher != "optuna":
            raise ValueError(
                f"storage: Optuna storages record searcher='optuna' searches, not {self.searcher!r}"
            )
        if policy.needs_sampler and self.searcher == "random":
            raise ValueError(
                f"warm_start={warm_start!r} proposes configs through Optuna: use searcher='optuna' or 'tune'"
            )
        return policy

    def _task_embedding(self, obj: Objective) -> tuple[tuple[str, Any] | None, list[WarmStart]]:
        """The task's `(embedder, vector)` when the caller gave it or an explicit landmark
        embedder measures it (its probes are then evaluations of this task, to be told to
        the searcher); (None, []) otherwise."""
        if self.embedding is not None or self.embedder is None:
            return self.given_embedding, []
        embedder = self.embedder
        if len(embedder.probes) >= self.budget:
            raise ValueError(
                f"budget {self.budget} leaves nothing after {len(embedder.probes)} landmark probes"
            )
        vector, scores = embedder.embed_with_scores(obj)
        return (embedder.name, vector), [
            WarmStart(self.space.validate(p), s) for p, s in zip(embedder.probes, scores)
        ]

    def _start(
        self,
        policy: policies.WarmStartPolicy,
        store: TaskMemory | None,
        obj: Objective,
        told: list[WarmStart],
    ) -> policies.Start:
        """What the policy knows: the stored tasks it learns from and the memory's model."""
        past, model = memory_model(
            store if policy.uses_memory else None,
            self.space,
            self.family_filter,
            self.task_id,
            self.seed,
            self.given_embedding,
            policy.neighbours(self.k),
        )
        return policies.Start(
            self.space,
            past,
            model,
            obj,
            self.budget,
            told,
            by_embedding=self.embedding is not None,
            n_warm=self.n_warm_start,
            seed=self.seed,
        )

    def _run_searcher(
        self, obj: Objective, plan: policies.WarmStartPlan, sampler: Any, store: TaskMemory | None, key: str
    ) -> SearchResult:
        """The searcher's part; on Ctrl-C the finished evaluations are kept in the memory
        (under the key plus '/interrupted') and `SearchInterrupted` says so."""
        options: dict[str, Any] = (
            {} if self.storage is None else {"storage": self.storage, "study_name": self.task_id}
        )
        if sampler is not None:
            options["sampler"] = sampler
        searcher = make_searcher(self.searcher, self.seed, **options)
        try:
            result = searcher.search(
                obj, self.space, self.budget - len(plan.told), warm_start=plan.warm_start
            )
        except KeyboardInterrupt:
            finished = [Trial(ws.config, ws.score, None, "probe") for ws in plan.told] + obj.history
            kept = None
            if store is not None and any(np.isfinite(t.score) for t in finished):
                kept = self._remember(store, f"{key}/interrupted", finished, self.searcher)
            raise SearchInterrupted(finished, kept) from None
        if obj.errors:
            log.warning(
                "task %s: %d of %d evaluations raised (the first: %s)",
                self.task_id,
                len(obj.errors),
                len(result.evaluated),
                obj.errors[0][1],
            )
        return result

    def multi_objective(self) -> SearchResult:
        """`search` with several objectives: warm start from the stored Pareto sets, Optuna's
        multi-objective sampler, every metric stored."""
        from metanas.searchers.multi_objective import MultiObjective, multi_objective_search

        if self.objectives is None:
            raise ValueError("constraints: bound metrics of a multi-objective search; pass objectives= too")
        mo = MultiObjective(self.objective, self.objectives, self.constraints, self.fail_fast)  # checks both
        warm_start = self.warm_start or policies.MULTI_OBJECTIVE_DEFAULT
        policy = policies.get(warm_start, multi_objective=True)
        if self.searcher not in MULTI_OBJECTIVE_SEARCHERS:
            choices = tuple(MULTI_OBJECTIVE_SEARCHERS)
            raise ValueError(
                f"searcher: a multi-objective search takes one of {choices}, got {self.searcher!r}"
            )
        _check_task_and_budget(self.task_id, self.budget)
        store = open_memory(self.memory)
        past = self._pareto_sources(store if policy.uses_memory else None)
        plan = policy.plan(
            policies.Start(
                self.space, past, objectives=mo.objectives, constraints=mo.constraints, seed=self.seed
            )
        )
        log.info("task %s: %d warm-start configs from stored Pareto sets", self.task_id, len(plan.queued))
        result = multi_objective_search(
            mo,
            self.space,
            self.budget,
            plan.queued,
            MULTI_OBJECTIVE_SEARCHERS[self.searcher],
            self.seed,
            self.storage,
            self.task_id,
        )
        result.trials = self._explained_multi_objective(result.trials, plan, dict(mo.objectives))
        if store is not None:  # (raises SearchFailed when no trial was feasible: nothing to remember)
            key = self.record_key(warm_start, "/" + ",".join(mo.objectives))
            self._remember(
                store, key, result.trials, f"{self.searcher}_multi_objective", self.given_embedding
            )
        return result

    def _pareto_sources(self, store: TaskMemory | None) -> list[PastTask]:
        """The stored tasks whose Pareto sets warm-start a multi-objective search: the `k`
        nearest by embedding, or the newest first (none without a memory)."""
        if store is None:
            return []
        given = self.given_embedding
        if given is None:
            return list(reversed(past_tasks(store, self.space, self.family_filter, self.task_id)))
        hits = store.nearest(given[1], self.k, self.space.signature, given[0], family=self.family_filter)
        return [PastTask(r.task_id, r.trials, sim) for r, sim in hits if r.task_id != self.task_id]

    def _explained_multi_objective(
        self, trials: list[Trial], plan: policies.WarmStartPlan, goals: dict[str, str]
    ) -> list[Trial]:
        """Each trial with its `why` (the objectives kept with it, so a stored search can be drawn again)."""
        origins = iter(plan.origins)
        searched = {"source": f"{self.searcher} (multi-objective)", "objectives": goals}
        return [
            replace(
                t,
                why={"source": "pareto set", "task": next(origins), "objectives": goals}
                if t.source == "warm_start"
                else searched,
            )
            for t in trials
        ]

    def _remember(
        self,
        store: TaskMemory,
        key: str,
        trials: Sequence[Trial],
        searcher: str,
        embedding: tuple[str, Any] | None = None,
    ) -> str:
        """Append the search's record: its best trial, every trial, and its embedding
        (`(embedder, vector)` given, or estimated from the trials). Raises SearchFailed when
        no trial succeeded. A key already stored is logged, not added."""
        from metanas.memory.records import TaskRecord

        best = SearchResult(searcher, list(trials)).best
        dicts = [t.to_dict() for t in trials]
        name, vector = embedding if embedding is not None else estimated_landmarks(self.space, dicts)
        record = TaskRecord(
            key=key,
            task_id=self.task_id,
            family=self.family,
            embedder=name,
            embedding=vector,
            space_signature=self.space.signature,
            best_config=best.config,
            best_score=best.score,
            trials=dicts,
            searcher=searcher,
            campaign_id=self.campaign_id,
            created_at=time.time(),
            space=self.space.to_spec(),
        )
        if not store.append([record]):  # (idempotent: a retried search never duplicates a record)
            log.warning(
                "the memory already holds %r (the same search, same budget and seed): not added again", key
            )
        return key


def _check_task_and_budget(task_id: str, budget: Any) -> None:
    if not task_id:
        raise ValueError("task_id: required, so the memory can tell tasks apart")
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget: must be a positive number of evaluations, got {budget!r}")


def open_memory(memory: str | Path | None) -> TaskMemory | None:
    """The memory directory as a `MemoryStore` (created if missing), or None without one."""
    if memory is None:
        return None
    from metanas.memory.store import MemoryStore

    return MemoryStore(Path(memory))


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


def explained(
    trials: list[Trial], policy: policies.WarmStartPolicy, searcher: str, plan: Any, sampler: Any
) -> list[Trial]:
    """Each evaluated trial with its `why`: the probe, warm start or model proposal it was,
    and the stored tasks behind it with their weights (`metanas explain` draws them)."""
    proposals = list(getattr(sampler, "history", []))
    task_ids = (
        [t.task_id for t in sampler.model.tasks] if sampler is not None and sampler.model is not None else []
    )
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
            why = {
                "source": f"memory model ({p.source})",
                "evaluations_before": sum(o.source != "known" for o in out),
                "tasks": top_tasks(dict(zip(task_ids, p.weights.tolist()))),
            }
        else:
            # (the model's sampler hands over to TPE)
            why = {"source": "tpe" if policy.needs_sampler else searcher}
        out.append(replace(t, why=why))
    return out
