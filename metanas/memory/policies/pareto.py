"""`pareto` (multi-objective searches): the stored tasks' Pareto sets first, points spread
along each front, round-robin over the stored tasks in order of preference (most similar,
or newest), `metanas.memory.pareto_warmstart`."""

from __future__ import annotations

from metanas.memory.pareto_warmstart import N_PARETO_WARM, pareto_warm_start
from metanas.memory.policies.base import Start, WarmStartPlan, WarmStartPolicy


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
