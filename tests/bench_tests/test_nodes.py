"""`metanas bench scaling --nodes`: the capacity model's arithmetic, and the runs on a
simulated 2-node cluster (a process of its own, as the benchmark runs them)."""

from __future__ import annotations

import pytest

from metanas.bench.nodes import _on_cluster, largest_cluster, predicted_utilisation

MODEL = {"per_call_s": 0.0005, "per_update_s": 0.001}


def test_the_capacity_model_adds_idle_per_update_and_per_call_costs():
    run = {"updates_per_s": 400.0, "arrays_per_update": 0.5, "idle_utilisation": 0.05}
    assert predicted_utilisation(run, MODEL) == pytest.approx(0.05 + 400 * (0.001 + 0.0005 * 0.5))
    # workers finishing a task every 150 ms: 1.5 ms of the MetaLearner per update flat, so
    # 100 workers saturate it; aggregated two to a call, 1.25 ms: 120 workers
    assert largest_cluster(MODEL, 0.15, 1.0) == pytest.approx(100)
    assert largest_cluster(MODEL, 0.15, 0.5) == pytest.approx(120)
    assert largest_cluster(MODEL, 0.15, 1.0, idle=0.1) == pytest.approx(90)


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_two_simulated_nodes_aggregated_halve_the_arrays_keep_the_sync_meta_parameters_and_survive_a_removal(
    tiny_campaign_dict,
):
    from metanas.platform.config import parse_campaign

    rows = _on_cluster(parse_campaign(tiny_campaign_dict), 2, iterations=4, largest=True)
    runs = {(r["updates"], r["aggregation"], bool(r.get("node_removed"))): r for r in rows}
    assert set(runs) == {
        ("async", "flat", False),
        ("async", "node", False),
        ("async", "node", True),
        ("sync", "flat", False),
        ("sync", "node", False),
    }
    for r in rows:  # every task accounted for once, every update applied once; 2 workers per fake GPU
        assert r["accounted_for"] and r["applied_once"], r
        assert r["nodes_used"] == 2 and r["on_head"] == 0 and r["workers_per_gpu"] == [2], r
    assert runs["async", "flat", False]["arrays_per_update"] == 1.0
    assert runs["async", "node", False]["arrays_per_update"] < 1.0
    assert runs["async", "node", True]["tasks_retried"] >= 1  # the removed node's tasks ran again
    # sync: meta_batch = workers, so a node sums about two of a learner's tasks per iteration
    assert runs["sync", "flat", False]["arrays_per_update"] == 1.0
    assert runs["sync", "node", False]["arrays_per_update"] <= 0.5
    assert runs["sync", "node", False]["largest_difference_from_flat"] < 1e-6
