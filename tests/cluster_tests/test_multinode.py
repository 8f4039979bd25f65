"""Multi-node behaviour on one machine: a simulated cluster in its own process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]


def _run_scenario(module: str, *args: str, timeout: int = 550) -> dict:
    """A scenario script run in a process of its own (it joins its own Ray cluster); its
    last JSON line."""
    proc = subprocess.run(
        [sys.executable, "-m", f"tests.cluster_tests.{module}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1])


def _scenario(tmp_path, mode: str, updates: str) -> dict:
    return _run_scenario("multinode_scenario", str(tmp_path / "run"), mode, updates)


@pytest.mark.parametrize("updates", ["sync", "async"])
def test_workers_spread_one_per_gpu_node_and_survive_losing_a_node(tmp_path, updates):
    r = _scenario(tmp_path, "remove", updates)
    assert r["error"] is None, r["error"]
    # one TaskWorker on each GPU node; no real GPU here, so each said so and used the CPU
    assert sorted(r["worker_nodes"]) == sorted(r["gpu_nodes"])
    assert r["devices"] == ["cpu"] * 3
    # the MetaLearner and the memory writer stay on the driver's (head) node
    assert r["central_nodes"] == [r["head_node"]] * 2
    mt = r["summary"]["meta_train"]
    # the node's in-flight tasks were retried on the other nodes; nothing lost or doubled
    assert mt["tasks_completed"] + mt["tasks_failed"] == mt["tasks_planned"] == 14 * 2 * 2
    assert mt["tasks_failed"] == 0 and mt["updates_applied"] == mt["tasks_completed"]
    assert r["memory_keys"] == r["memory_unique"] == 14 * 2
    assert r["summary"]["meta_test"]["tasks"] == 6


def test_a_campaign_that_loses_every_worker_node_fails_with_a_clear_message(tmp_path):
    r = _scenario(tmp_path, "remove_all", "sync")  # the scenario sets the driver's wait to 5 s
    assert r["summary"] is None
    assert "TimeoutError" in r["error"] and "no lost worker came back" in r["error"], r["error"]


def test_bench_scaling_runs_on_a_simulated_multinode_cluster(tiny_campaign_dict):
    from metanas.bench.scaling import _run_multinode
    from metanas.platform.config import parse_campaign

    r = _run_multinode(parse_campaign(tiny_campaign_dict), iterations=2, workers=2, updates="async")
    assert r["workers"] == 2 and r["nodes"] == 2  # one worker per simulated node
    assert r["tasks_per_s"] > 0 and 0 <= r["ray_overhead_fraction"] < 1


def test_half_a_gpu_each_puts_two_workers_on_every_gpu_spread_over_the_nodes():
    """workers.gpus_per_worker 0.5 on two nodes of one (declared) GPU each: four workers,
    two to a GPU, none on the GPU-less head; with no real GPU they use the CPU."""
    result = _run_scenario("gpu_share_scenario", timeout=300)
    assert len(result["workers"]) == 4
    assert {w["node"] for w in result["workers"]} == set(result["gpu_nodes"])  # spread, none on the head
    assert all(len(w["gpu_ids"]) == 1 and w["device"] == "cpu" for w in result["workers"])
    assert sorted(result["per_gpu"].values()) == [2, 2]
