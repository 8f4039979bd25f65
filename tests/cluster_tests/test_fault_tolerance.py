"""Processes die for real (SIGKILL) while a campaign runs on a real local Ray; the campaign
finishes with every task accounted for, no update applied twice, no duplicate record."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import ray

from metanas.cluster.campaign_driver import CampaignDriver
from metanas.cluster.run_dir import RunDir
from metanas.memory.store import MemoryStore
from metanas.platform.config import parse_campaign

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


def _start(campaign_dict: dict, out) -> tuple[CampaignDriver, threading.Thread, dict]:
    campaign = parse_campaign(campaign_dict)
    run = RunDir(out)
    run.root.mkdir(parents=True)
    run.save_campaign(campaign)
    runner = CampaignDriver(campaign, run, address=None, progress=False)
    result: dict = {}

    def target():
        try:
            result["summary"] = {"meta_train": runner.run(None).meta_train}
        except BaseException as err:  # reported by the test, not swallowed
            result["error"] = err
        finally:
            runner.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return runner, thread, result


def _wait_for_checkpoint(out, iteration: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not (out / "checkpoints" / f"iter_{iteration:06d}.json").exists():
        assert time.time() < deadline, f"no checkpoint {iteration} within {timeout} s"
        time.sleep(0.02)


def _slow_tiny(campaign: dict, updates: str) -> dict:
    # async with the default stale_policy (downweight): every completed task's update counts
    campaign["meta_train"].update(iterations=14, checkpoint_every=2, updates=updates)
    campaign["meta_train"]["inner"]["steps"] = 25  # long enough tasks to be killed mid-way
    return campaign


def _check_accounted_for(summary: dict, out) -> None:
    mt = summary["meta_train"]
    assert mt["tasks_completed"] + mt["tasks_failed"] == mt["tasks_planned"]
    assert mt["updates_applied"] == mt["tasks_completed"]
    keys = MemoryStore(out / "memory").keys()
    assert len(keys) == len(set(keys)) == 14 * 2  # one record per supernet task, exactly once


@pytest.mark.parametrize("updates", ["sync", "async"])
def test_a_killed_task_worker_is_restarted_and_its_task_retried(
    ray_session, tiny_campaign_dict, tmp_path, updates
):
    out = tmp_path / "run"
    runner, thread, result = _start(_slow_tiny(tiny_campaign_dict, updates), out)
    _wait_for_checkpoint(out, 2)
    victim = runner.worker_info[0].pid
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=240)
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    assert summary["meta_train"]["tasks_retried"] >= 1
    _check_accounted_for(summary, out)


@pytest.mark.parametrize("updates", ["sync", "async"])
def test_a_killed_meta_learner_restarts_from_its_checkpoint(
    ray_session, tiny_campaign_dict, tmp_path, updates
):
    out = tmp_path / "run"
    runner, thread, result = _start(_slow_tiny(tiny_campaign_dict, updates), out)
    _wait_for_checkpoint(out, 4)
    time.sleep(0.3)  # into the next iterations, so they have to be re-run
    old_pid = ray.get(runner.learner.actor.pid.remote())
    os.kill(old_pid, signal.SIGKILL)
    new_pid = ray.get(runner.learner.actor.pid.remote(), timeout=60)  # Ray restarted it
    thread.join(timeout=240)
    assert "error" not in result, result.get("error")
    assert new_pid != old_pid
    summary = result["summary"]
    # re-run from the checkpoint when it had applied updates past it; either way every
    # task is accounted for once and no update is applied twice
    print(
        "meta_learner_restarts",
        summary["meta_train"]["meta_learner_restarts"],
        summary["meta_train"]["tasks_completed"],
    )
    assert summary["meta_train"]["meta_learner_restarts"] <= 1
    if updates == "async":  # updates flow after every task, so the restart was always noticed
        assert summary["meta_train"]["meta_learner_restarts"] == 1
    _check_accounted_for(summary, out)


def test_a_killed_node_aggregator_loses_no_update(ray_session, tiny_campaign_dict, tmp_path):
    """Killed while it holds an update (async, `aggregation: node`): Ray restarts it, the
    task whose update it held runs again, and every update is applied exactly once."""
    campaign = _slow_tiny(tiny_campaign_dict, "async")
    campaign["meta_train"].update(aggregation="node", aggregation_linger_s=0.5)
    out = tmp_path / "run"
    runner, thread, result = _start(campaign, out)
    _wait_for_checkpoint(out, 2)
    (aggregator,) = runner.learner.aggregators.values()  # one node here
    deadline = time.time() + 60
    while ray.get(aggregator.held.remote()) == 0:
        assert time.time() < deadline, "the aggregator never held an update"
        time.sleep(0.01)
    old_pid = ray.get(aggregator.pid.remote())
    os.kill(old_pid, signal.SIGKILL)
    thread.join(timeout=240)
    assert "error" not in result, result.get("error")
    mt = result["summary"]["meta_train"]
    assert mt["tasks_retried"] >= 1  # the held update's task ran again
    _check_accounted_for(result["summary"], out)
    received = mt["meta_learner_received"]
    # aggregated all along, also after its restart (without it no update would get through)
    assert received["calls"] < received["updates"]
