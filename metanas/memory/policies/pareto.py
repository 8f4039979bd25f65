"""`pareto` (multi-objective searches): the stored tasks' Pareto sets first.

Each stored search of the same space that measured every objective gives its front (its
feasible trials no other dominates, under the new search's bounds). From each front the
warm start takes points spread along it (the best on the first objective, the best on the
last, then in between), round-robin over the stored tasks, most similar (or newest) first,
so the first evaluations cover the whole trade-off where earlier tasks found it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from metanas.memory.policies.base import Start, WarmStartPlan, WarmStartPolicy
from metanas.memory.records import PastTask
from metanas.searchers.base import WarmStart, fit_warm_start
from metanas.searchers.pareto import feasible, pareto_front
from metanas.searchers.space import SearchSpace, config_key

N_PARETO_WARM = 10  # measured on NAS-Bench-201 (val_acc, latency): 10 of 50 evaluations


def stored_front(
    task: PastTask, objectives: Mapping[str, str], constraints: Mapping[str, float] | None
) -> list[dict]:
    """A stored search's feasible front, as trials, ordered by the first objective, best first."""
    measured = [
        t
        for t in task.trials
        if isinstance(t.get("metrics"), dict) and all(k in t["metrics"] for k in objectives)
    ]
    ok = [t for t in measured if feasible(t["metrics"], objectives, constraints)]
    front = [ok[i] for i in pareto_front([t["metrics"] for t in ok], objectives)]
    first = next(iter(objectives))
    sign = -1.0 if objectives[first] == "max" else 1.0
    return sorted(front, key=lambda t: sign * t["metrics"][first])


def _spread(front: list[dict]) -> list[dict]:
    """The front's points in an order that covers it early: both ends, then the middles."""
    if len(front) <= 2:
        return list(front)
    order, seen = [0, len(front) - 1], {0, len(front) - 1}
    parts = [(0, len(front) - 1)]
    while parts:
        next_parts = []
        for lo, hi in parts:
            mid = (lo + hi) // 2
            if mid not in seen:
                seen.add(mid)
                order.append(mid)
            if mid - lo > 1:
                next_parts.append((lo, mid))
            if hi - mid > 1:
                next_parts.append((mid, hi))
        parts = next_parts
    return [front[i] for i in order]


def pareto_warm_start(
    space: SearchSpace,
    past: Sequence[PastTask],
    objectives: Mapping[str, str],
    constraints: Mapping[str, float] | None = None,
    n: int = N_PARETO_WARM,
) -> list[tuple[WarmStart, str]]:
    """Up to `n` configs from the stored tasks' fronts (`past` in order of preference),
    each with the stored task whose front it came from."""
    queues = [(task.task_id, _spread(stored_front(task, objectives, constraints))) for task in past]
    picked: list[tuple[WarmStart, str]] = []
    seen: set[str] = set()
    while len(picked) < n and any(q for _, q in queues):
        for origin, q in queues:
            if q and len(picked) < n:
                fitted, _ = fit_warm_start(space, [q.pop(0)["config"]])  # (drops what does not fit)
                if fitted and config_key(fitted[0].config) not in seen:
                    seen.add(config_key(fitted[0].config))
                    picked.append((fitted[0], origin))
    return picked


class ParetoWarmStart(WarmStartPolicy):
    name = "pareto"
    multi_objective = True

    def plan(self, start: Start) -> WarmStartPlan:
        plan = super().plan(start)
        if start.objectives is None:
            raise ValueError("the pareto policy needs the search's objectives")
        warm = pareto_warm_start(start.space, start.past, start.objectives, start.constraints, N_PARETO_WARM)
        plan.queued, plan.origins = [ws for ws, _ in warm], [origin for _, origin in warm]
        return plan
