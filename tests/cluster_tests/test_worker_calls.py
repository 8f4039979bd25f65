"""Several meta-training tasks in one worker call (`meta_train.call_s`), on real Ray
actors: each task keeps its own outcome and its own update, a task that raises fails
alone, and a call lost with its worker loses none of its tasks."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
import pytest
import ray
import torch

from metanas.cluster.messages import Outcome, TrainTask
from metanas.cluster.task_worker import TaskWorkerCore
from metanas.cluster.wire import Packed, pack
from metanas.cluster.worker_pool import WorkerPool
from metanas.platform.config import parse_campaign

pytestmark = pytest.mark.ray


def _pool(campaign_dict: dict, slowdown: dict | None = None) -> tuple[WorkerPool, tuple]:
    campaign_dict["workers"]["count"] = 1
    campaign_dict["meta_train"].update(call_s=100.0, meta_batch=8)  # (sync: up to 8 per call)
    campaign = parse_campaign(campaign_dict)
    pool = WorkerPool(campaign, slowdown=slowdown)
    pool.wait_started()
    pool.sizer.saw(("metanas", None), 0.01)  # (its task time known: the first call need not be one task)
    return pool, (ray.put(pack(campaign.initial_params("metanas"))), 0)


def test_a_call_of_several_tasks_keeps_each_tasks_outcome_and_update(ray_session, tiny_campaign_dict):
    pool, args = _pool(tiny_campaign_dict)
    try:
        # iteration -1: its episode's seed is refused (a task that raises on the worker);
        # 6 tasks, so the first of the two calls in flight takes 3 (its share)
        plan = [(0, 0), (-1, 1), (0, 2), (0, 3), (0, 4), (0, 5)]
        queue = deque(TrainTask("metanas", iteration, slot) for iteration, slot in plan)
        attempts = sorted(pool.run(queue, lambda task: args, "test"), key=lambda a: a.task.slot)
        assert pool.calls < len(plan)
        assert [a.outcome for a in attempts] == [Outcome.COMPLETED, Outcome.FAILED] + [Outcome.COMPLETED] * 4
        assert "ValueError" in attempts[1].error and attempts[1].update is None
        first, third = (ray.get(attempts[i].update) for i in (0, 2))
        assert isinstance(first, Packed) and first.names == ray.get(args[0]).names
        assert abs(first.flat).sum() > 0 and (first.flat != third.flat).any()  # two tasks, two updates
        assert [a.result.task.slot for a in attempts if a.result] == [0, 2, 3, 4, 5]
    finally:
        pool.close()


def test_a_call_lost_with_its_worker_runs_each_of_its_tasks_again(ray_session, tiny_campaign_dict):
    pool, args = _pool(tiny_campaign_dict, slowdown={0: 40.0})  # a call long enough to be killed in
    try:
        queue = deque(TrainTask("metanas", 0, slot) for slot in range(6))
        killer = threading.Timer(1.0, lambda: ray.kill(pool.workers[0], no_restart=False))
        killer.start()
        attempts = list(pool.run(queue, lambda task: args, "test"))
        killer.join()
        outcomes = {slot: [a.outcome for a in attempts if a.task.slot == slot] for slot in range(6)}
        assert all(o[-1] is Outcome.COMPLETED and o.count(Outcome.COMPLETED) == 1 for o in outcomes.values())
        # the first call (3 tasks) was lost whole: each of its tasks ran again
        assert [outcomes[slot][0] for slot in range(3)] == [Outcome.RETRIED] * 3, outcomes
    finally:
        pool.close()


def test_two_calls_in_flight_on_one_worker_compute_one_at_a_time(ray_session, tiny_campaign_dict):
    """A worker takes its next call while it computes (Ray reads the call's arguments
    meanwhile), but computes one call at a time: two calls of the same learner sent at
    once give exactly the updates the same tasks give one after another in-process."""
    pool, (theta_ref, _) = _pool(tiny_campaign_dict)
    threads = torch.get_num_threads()
    try:
        worker = pool.workers[0]
        calls = [[TrainTask("metanas", 0, slot) for slot in slots] for slots in ((0, 1), (2, 3))]
        refs = [worker.meta_train.options(num_returns=3).remote(tasks, theta_ref, 0) for tasks in calls]
        got = [ray.get(r[:2]) for r in refs]
        core = TaskWorkerCore(parse_campaign(tiny_campaign_dict))
        theta = ray.get(theta_ref)
        torch.set_num_threads(1)  # (as the worker: its CPU's thread)
        for tasks, updates in zip(calls, got):
            for task, update in zip(tasks, updates):
                assert np.array_equal(update.flat, core.meta_train_task(task, theta)[0].flat), task
    finally:
        torch.set_num_threads(threads)
        pool.close()


def test_a_worker_answers_while_it_computes(ray_session, tiny_campaign_dict):
    """A lost worker's pings, and the next call, need not wait for the call it computes."""
    pool, args = _pool(tiny_campaign_dict, slowdown={0: 200.0})
    try:
        worker = pool.workers[0]
        running = worker.meta_train.options(num_returns=2).remote([TrainTask("metanas", 0, 0)], *args)[-1]
        ray.get(worker.info.remote(), timeout=60)
        assert ray.wait([running], timeout=0)[0] == []  # (still computing when the ping came back)
        ray.get(running, timeout=600)
    finally:
        pool.close()
