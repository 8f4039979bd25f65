"""`memory`: the black-box warm start from similar stored tasks' trials.

Without an embedding: 1. probe the new task with the memory's portfolio (configs good
across stored tasks, so no probe is a wasted evaluation; they count in the budget, always
leaving one evaluation to the search); 2. weight every stored task by how well its own
trials rank those probes (Spearman of its nearest-neighbour surrogate against the observed
scores: a task that ranks them the opposite way gets weight ~0, which guards against
negative transfer); 3. queue the best of every stored trial, weighted that way. With the
task's embedding: the portfolio of its k nearest stored tasks, weighted by similarity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from metanas._util.stats import spearman
from metanas.memory.knn import finite_trials, knn_predictor
from metanas.memory.memory_model import MemoryModel
from metanas.memory.policies.base import Start, WarmStartPlan, WarmStartPolicy
from metanas.memory.policies.portfolio import portfolio_warm_start, rank_configs
from metanas.memory.records import PastTask
from metanas.searchers.base import WarmStart, fit_warm_start
from metanas.searchers.space import SearchSpace, config_key

N_PROBES = 5  # measured on NAS-Bench-201 and HPOBench: 5 beat 3 probes and the plain portfolio


class MemoryWarmStart(WarmStartPolicy):
    name = "memory"

    def neighbours(self, k: int) -> int:
        return k

    def plan(self, start: Start) -> WarmStartPlan:
        plan = super().plan(start)
        if not start.past:
            return plan
        if start.by_embedding:  # the neighbours' portfolio, weighted by their similarity to the task
            plan.queued, plan.dropped = portfolio_warm_start(
                start.space, start.past, start.n_warm, start.model
            )
            plan.similarity = {t.task_id: t.similarity for t in start.past}
            return plan
        if start.objective is None:
            raise ValueError("the memory policy needs the objective to probe the task with")
        room = N_PROBES if start.budget is None else start.budget - len(plan.told) - 1
        _probe_and_rank(
            plan, start.space, start.past, start.objective, min(N_PROBES, room), start.n_warm, start.model
        )
        return plan


def _probe_and_rank(
    plan: WarmStartPlan,
    space: SearchSpace,
    past: Sequence[PastTask],
    objective: Callable[[dict[str, Any]], float],
    n_probes: int,
    n_warm: int,
    model: MemoryModel | None = None,
) -> None:
    probes, dropped = portfolio_warm_start(space, past, max(0, n_probes), model)
    configs = [p.config for p in probes]
    scores = [float(objective(c)) for c in configs]
    weighted = []
    for task in past:
        sim = 0.5
        if len(configs) > 1 and finite_trials(task.trials):
            predict = knn_predictor(space, task.trials)
            sim = (1.0 + spearman(scores, [predict(c) for c in configs])) / 2.0
        plan.similarity[task.task_id] = sim
        weighted.append(PastTask(task.task_id, task.trials, sim))
    probed = {config_key(c) for c in configs}
    ranked = [(c, v) for c, v in rank_configs(weighted, similarity_power=4.0) if config_key(c) not in probed]
    plan.queued, more_dropped = fit_warm_start(
        space, [WarmStart(c, None, v) for c, v in ranked], limit=n_warm
    )
    plan.told += [WarmStart(c, s) for c, s in zip(configs, scores)]
    plan.dropped = dropped + more_dropped
