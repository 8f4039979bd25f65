"""`metanas bench scaling --nodes`: the capacity model's arithmetic, and the runs on a
simulated 2-node cluster (a process of its own, as the benchmark runs them)."""

from __future__ import annotations

import pytest

from metanas.bench.nodes import _on_cluster, fit_model, largest_cluster, predicted_utilisation

MODEL = {"per_update_s": 0.0002, "per_inline_s": 0.001, "per_stored_s": 0.0016}


def _run(updates_per_s: float, inline_per_s: float, stored_per_s: float, idle: float = 0.01) -> dict:
    run = {
        "updates_per_s": updates_per_s,
        "inline_per_s": inline_per_s,
        "stored_per_s": stored_per_s,
        "idle_utilisation": idle,
    }
    return {**run, "utilisation": predicted_utilisation({**run}, MODEL)}


def test_the_capacity_model_recovers_its_per_array_costs_and_sizes_a_cluster():
    flat, node = _run(300, 300, 0), _run(200, 10, 95, idle=0.02)
    assert fit_model(MODEL["per_update_s"], flat, node) == pytest.approx(MODEL)
    assert _run(400, 0, 200)["utilisation"] == pytest.approx(0.01 + 400 * 0.0002 + 200 * 0.0016)
    # workers finishing a task every 120 ms: 1.2 ms of the MetaLearner per update flat, so
    # 100 workers saturate it; two updates to a stored array, 1.0 ms: 120 workers
    assert largest_cluster(MODEL, 0.12, 1) == pytest.approx(100)
    assert largest_cluster(MODEL, 0.12, 2) == pytest.approx(120)
    assert largest_cluster(MODEL, 0.12, 1, idle=0.1) == pytest.approx(90)


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_two_simulated_nodes_aggregated_halve_the_sync_arrays_keep_the_meta_parameters_and_survive_a_removal(
    tiny_campaign_dict,
):
    """The benchmark's runs at its largest cluster, here 2 nodes: sync flat and aggregated
    (real tasks), then async aggregated with a node removed mid-run."""
    from metanas.platform.config import parse_campaign

    campaign = parse_campaign(tiny_campaign_dict)
    rows = _on_cluster(campaign, 2, iterations=4, largest=True, loads=False, idle_s=0.1)
    runs = {(r["updates"], r["aggregation"], bool(r.get("node_removed"))): r for r in rows}
    assert set(runs) == {("sync", "flat", False), ("sync", "node", False), ("async", "node", True)}
    for r in rows:  # every task accounted for once, every update applied once; 2 workers per fake GPU
        assert r["accounted_for"] and r["applied_once"], r
        assert r["nodes_used"] == 2 and r["on_head"] == 0 and r["workers_per_gpu"] == [2], r
        # the driver's loop is one of its threads: part of its CPU, none of it missing
        assert 0 < r["driver_loop_cpu_ms_per_task"] < r["driver_cpu_ms_per_task"], r
    removed = runs["async", "node", True]
    assert removed["removed_while_running"] and removed["tasks_retried"] >= 1  # its tasks re-run
    assert removed["arrays_per_update"] < 1.0  # aggregated
    # sync: meta_batch = workers, so a node sums about two of a learner's tasks per iteration
    assert runs["sync", "flat", False]["arrays_per_update"] == 1.0
    assert runs["sync", "node", False]["arrays_per_update"] <= 0.5
    assert runs["sync", "node", False]["largest_difference_from_flat"] < 1e-6
