"""`portfolio`: the memory's portfolio (configs chosen greedily for the expected best over
the stored tasks, ignoring similarity to this one) evaluated first, then the searcher: a
baseline for the others."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from metanas.memory.knn import finite_trials
from metanas.memory.memory_model import MemoryModel
from metanas.memory.policies.base import Start, WarmStartPlan, WarmStartPolicy
from metanas.memory.records import PastTask
from metanas.searchers.base import WarmStart, fit_warm_start
from metanas.searchers.space import SearchSpace, config_key


class PortfolioWarmStart(WarmStartPolicy):
    name = "portfolio"

    def plan(self, start: Start) -> WarmStartPlan:
        plan = super().plan(start)
        if start.past:
            plan.queued, plan.dropped = portfolio_warm_start(
                start.space, start.past, start.n_warm, start.model
            )
        return plan


def portfolio_warm_start(
    space: SearchSpace, past: Sequence[PastTask], n: int, model: MemoryModel | None = None
) -> tuple[list[WarmStart], int]:
    """`n` configs for the expected best over the stored tasks: the cross-task surrogate's
    greedy portfolio (`MemoryModel.portfolio`). Stored tasks of a single trial each (as a
    campaign's DARTS records) train no surrogate: then the configs good on most tasks."""
    model = model or MemoryModel(space, past)
    if model.tasks:
        return [WarmStart(config, None, predicted) for config, predicted, _ in model.portfolio(n)], 0
    flat = [PastTask(t.task_id, t.trials, 0.0) for t in past]
    return fit_warm_start(
        space, [WarmStart(config, None, score) for config, score in rank_configs(flat)], limit=n
    )


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


def rank_configs(
    past: Sequence[PastTask], similarity_power: float = 2.0
) -> list[tuple[dict[str, Any], float]]:
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
