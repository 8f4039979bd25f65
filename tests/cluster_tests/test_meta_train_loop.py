"""The meta-train scheduler without Ray: an in-process pool and the real MetaLearner logic
(`MetaLearnerCore`), so sync and async updates, retries, lost updates and rewinds after a
MetaLearner restart are checked in milliseconds."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
import torch

from metanas.cluster.checkpointer import Checkpointer, write_initial_checkpoint
from metanas.cluster.messages import Attempt, Outcome, TrainResult, UpdateLost, WorkerInfo
from metanas.cluster.meta_learner import AsyncSettings, MetaLearnerCore
from metanas.cluster.meta_train_loop import MAX_REWINDS, MetaTrainLoop
from metanas.cluster.run_dir import RunDir
from metanas.cluster.train_state import TrainPlan, TrainState, WorkerTally
from metanas.searchers.darts.reptile import MetaSchedule

WORKER = WorkerInfo(0, "node", 1234, "cpu")


class FakePool:
    """Runs each task at once, in process. `lose` maps a task's (learner, iteration, slot) to
    how many times its worker dies under it; `fail` tasks raise; `before(task)` runs first."""

    def __init__(self, retries=2, lose=None, fail=(), before=None):
        self.retries, self.lose, self.fail, self.before = retries, dict(lose or {}), set(fail), before
        self.runs = Counter()

    def run(self, queue, args_for, what):
        tries = Counter()
        while queue:
            task = queue.popleft()
            theta, *version = args_for(task)
            name = (task.learner, task.iteration, task.slot)
            if self.before:
                self.before(task)
            if self.lose.get(name, 0) > tries[name]:
                tries[name] += 1
                if tries[name] > self.retries:
                    yield Attempt(task, Outcome.FAILED, error="its worker died")
                else:
                    queue.appendleft(task)
                    yield Attempt(task, Outcome.RETRIED)
                continue
            if name in self.fail:
                yield Attempt(task, Outcome.FAILED, error="loss became nan")
                continue
            self.runs[name] += 1
            update = {k: torch.full_like(v, 0.5) for k, v in theta.items()}
            record = f"{task.iteration}/{task.slot}" if task.learner == "metanas" else None
            result = TrainResult(task, 0.5, 0.6, 0.001, 0.002, version[0] if version else 0, record, WORKER)
            yield Attempt(task, Outcome.COMPLETED, result, update)


class LocalLearner:
    """The MetaLearner actor's logic, called in process; `restart()` is what Ray does after
    its process dies (a new instance from the newest checkpoint)."""

    def __init__(self, core: MetaLearnerCore, lose_updates=(), hold_replies=False, lose_replies=()):
        """`hold_replies`: a reply is given only when the loop waits for all of them, as
        when the MetaLearner (or an aggregator) is slow to answer. `lose_replies`: these
        (learner, key) updates get in, but their replies are lost (an aggregator killed
        after it forwarded them)."""
        self.core = core
        self.lose_updates = set(lose_updates)
        self.lose_replies = set(lose_replies)
        self.hold_replies = hold_replies
        self.reloads = 0
        self.answers: dict[int, object] = {}
        self.most_waiting = 0

    def restart(self):
        self.core.reload()

    def params(self, learner):
        return {k: v.clone() for k, v in self.core.params[learner].items()}

    def snapshot(self, learner):
        return self.core.current_version(learner), self.params(learner)

    def apply(self, iteration, updates):
        return [
            self.core.apply(name, iteration, [u.update for u in updates.get(name, [])])
            for name in ("metanas", "reptile_fixed")
        ]

    def send(self, learner, key, base_version, update, incarnation):
        ticket = len(self.answers)
        if (learner, key) in self.lose_updates:
            self.lose_updates.discard((learner, key))
            self.answers[ticket] = UpdateLost(f"update {key} lost")
        else:
            self.answers[ticket] = self.core.submit(learner, key, base_version, update.update, incarnation)
        if (learner, key) in self.lose_replies:
            self.lose_replies.discard((learner, key))
            self.answers[ticket] = UpdateLost(f"the reply to update {key} lost")
        return ticket

    def replies(self, tickets, wait):
        self.most_waiting = max(self.most_waiting, len(tickets))
        if self.hold_replies and not wait:
            return []
        return [(ticket, self.answers[ticket]) for ticket in tickets]

    def flush(self):
        self.core.flush()

    def save(self, path, incarnation):
        return self.core.save(path, incarnation)

    def reload(self):
        self.reloads += 1
        return self.core.reload()

    def incarnation(self):
        return self.core.incarnation


class Bar:
    n = 0

    def update(self, k=1):
        self.n += k

    def reset(self, total=None):
        self.n = 0

    def set_postfix(self, **kw):
        pass


class Memory:
    def __init__(self):
        self.records = []

    def append(self, records):
        self.records += records


def _setup(
    tmp_path,
    updates="sync",
    iterations=8,
    meta_batch=2,
    every=2,
    pool=None,
    lose_updates=(),
    hold=False,
    lose_replies=(),
):
    plan = TrainPlan(iterations, meta_batch, every, updates, MetaSchedule(iterations, 1.0, 0.5))
    run = RunDir(tmp_path)
    params = {"w": torch.zeros(3), "alpha": torch.zeros(2, 2)}
    state = write_initial_checkpoint(run, {"metanas": params, "reptile_fixed": {"w": torch.zeros(3)}})
    settings = AsyncSettings(meta_batch, 2, "downweight") if updates == "async" else None
    core = MetaLearnerCore(plan.schedule, str(tmp_path), settings)
    learner = LocalLearner(core, lose_updates, hold, lose_replies)
    memory = Memory()
    checkpointer = Checkpointer(run, learner, memory, wall_before=0.0)
    pool = pool or FakePool()
    scheduler = MetaTrainLoop(plan, pool, learner, checkpointer, WorkerTally([WORKER]), Bar(), EVENTS.append)
    EVENTS.clear()
    return scheduler, state, learner, memory, pool


EVENTS: list[dict] = []  # what the last scheduler `_setup` built logged


def _all_accounted_for(state, memory, iterations=8, meta_batch=2):
    c = state.counts
    assert c.completed + c.failed == iterations * meta_batch * 2
    assert len(set(memory.records)) == iterations * meta_batch  # every supernet task once


@pytest.mark.parametrize("updates", ["sync", "async"])
def test_every_task_runs_once_and_every_update_is_applied(tmp_path, updates):
    scheduler, state, learner, memory, pool = _setup(tmp_path, updates)
    final = scheduler.run(state)
    _all_accounted_for(final, memory)
    assert final.counts.applied == final.counts.completed == 32 and final.counts.failed == 0
    assert set(pool.runs.values()) == {1} and len(memory.records) == 16
    assert final.iteration == 8 and [r["iteration"] for r in final.curve] == list(range(8))
    assert sorted(p.stem for p in (tmp_path / "checkpoints").glob("*.json")) == [
        f"iter_{i:06d}" for i in (0, 2, 4, 6, 8)
    ]
    assert learner.core.current_version("metanas") == 8  # one meta-step per iteration's meta_batch
    # every update was +0.5 with beta decaying linearly from 1 to 0 over the 8 steps
    assert float(learner.core.params["metanas"]["w"][0]) == pytest.approx(
        0.5 * sum(1 - i / 8 for i in range(8))
    )
    assert final.workers == [
        {"worker_id": 0, "node_id": "node", "pid": 1234, "device": "cpu", "gpu_ids": [], "tasks": 32}
    ]


@pytest.mark.parametrize("updates", ["sync", "async"])
def test_lost_tasks_are_retried_and_failed_ones_never_reach_the_meta_parameters(tmp_path, updates):
    pool = FakePool(
        retries=2, lose={("metanas", 1, 0): 1, ("reptile_fixed", 2, 1): 5}, fail={("metanas", 3, 1)}
    )
    scheduler, state, learner, memory, _ = _setup(tmp_path, updates, pool=pool)
    final = scheduler.run(state)
    c = final.counts
    assert c.retried == 1 + 2 and c.failed == 2  # one lost too often, one raised
    assert c.completed == 30 and c.applied == c.completed
    assert c.completed + c.failed == 32


@pytest.mark.parametrize("hold", [False, True])
def test_an_async_update_lost_with_its_node_reruns_its_task(tmp_path, hold):
    scheduler, state, learner, memory, pool = _setup(
        tmp_path, "async", lose_updates={("metanas", 5)}, hold=hold
    )
    final = scheduler.run(state)
    assert pool.runs[("metanas", 2, 1)] == 2  # key 5 = iteration 2, slot 1
    assert final.counts.retried == 1 and final.counts.completed == final.counts.applied == 32
    _all_accounted_for(final, memory)


def test_an_async_update_that_got_in_but_lost_its_reply_is_applied_and_counted_once(tmp_path):
    """Its task runs again; the MetaLearner refuses the second update by its key, and the
    loop counts the task's update as applied (it is in the meta-parameters, once)."""
    scheduler, state, learner, memory, pool = _setup(tmp_path, "async", lose_replies={("metanas", 5)})
    final = scheduler.run(state)
    assert pool.runs[("metanas", 2, 1)] == 2 and final.counts.duplicate == 1
    assert final.counts.retried == 1 and final.counts.completed == final.counts.applied == 32
    _all_accounted_for(final, memory)
    reference, ref_state, ref_learner, *_ = _setup(tmp_path / "no_loss", "async")
    reference.run(ref_state)
    for name, params in ref_learner.core.params.items():  # the same meta-parameters as no loss
        for key, value in params.items():
            assert torch.equal(learner.core.params[name][key], value), (name, key)


def test_async_meta_training_saves_each_checkpoint_once_the_last_included(tmp_path):
    scheduler, state, *_ = _setup(tmp_path, "async")  # 8 iterations, a checkpoint every 2
    saved, save = [], scheduler.checkpointer.save
    scheduler.checkpointer.save = lambda state, *rest: saved.append(state.iteration) or save(state, *rest)
    scheduler.run(state)
    assert saved == [2, 4, 6, 8]


def test_async_updates_go_out_without_waiting_and_every_reply_is_in_before_a_checkpoint(tmp_path):
    """Replies held until the loop waits: updates pile up unanswered (what lets an
    aggregator combine them), yet every checkpoint holds exactly its finished tasks."""
    scheduler, state, learner, memory, pool = _setup(tmp_path, "async", hold=True)
    final = scheduler.run(state)
    assert learner.most_waiting >= 8  # a whole checkpoint's worth of updates went out unanswered
    assert final.counts.applied == final.counts.completed == 32 and set(pool.runs.values()) == {1}
    _all_accounted_for(final, memory)
    for checkpoint in RunDir(tmp_path).checkpoints_list()[1:]:
        stream = checkpoint.state["meta_learner"]["streams"]["metanas"]
        finished = TrainState.from_json(checkpoint.state).finished
        supernet_done = sum(n in finished for n in range(32) if scheduler.plan.task(n).learner == "metanas")
        assert stream["version"] * 2 + stream["buffered"] == supernet_done  # meta_batch 2 per step
    assert float(learner.core.params["metanas"]["w"][0]) == pytest.approx(
        0.5 * sum(1 - i / 8 for i in range(8))
    )


@pytest.mark.parametrize("updates", ["sync", "async"])
def test_a_restarted_meta_learner_rewinds_both_to_the_checkpoint(tmp_path, updates):
    restarted = []

    def crash(task):
        if (task.iteration, task.slot, task.learner) == (5, 0, "reptile_fixed") and not restarted:
            restarted.append(task)
            scheduler.learner.restart()

    scheduler, state, learner, memory, pool = _setup(tmp_path, updates, pool=FakePool(before=crash))
    final = scheduler.run(state)
    assert scheduler.restarts == 1 and restarted
    _all_accounted_for(final, memory)
    assert final.counts.applied == final.counts.completed == 32  # counts came back with the checkpoint
    assert learner.core.current_version("metanas") == 8
    assert pool.runs[("metanas", 4, 0)] == 2 and pool.runs[("metanas", 0, 0)] == 1  # only the tasks since
    # the event log holds every try, the rewind, and (async) every update with its staleness
    assert [e["to_iteration"] for e in EVENTS if e["kind"] == "rewind"] == [4]
    tries = [e for e in EVENTS if e["kind"] == "task"]
    assert len(tries) == sum(pool.runs.values()) and all(
        e["outcome"] == "completed" and e["worker"] == 0 for e in tries
    )
    updates_logged = [e for e in EVENTS if e["kind"] == "update"]
    # (async: the update that met the restarted MetaLearner is refused, not logged)
    assert len(updates_logged) == (len(tries) - 1 if updates == "async" else 0)
    assert all(e["staleness"] >= 0 for e in updates_logged)


class RestartBeforeApply(LocalLearner):
    """Ray retries a call into the restarted actor: the restart hides behind a successful
    step and shows only at the next checkpoint (the livelock fixed in ad5d3f1)."""

    def apply(self, iteration, updates):
        if iteration == 4 and not getattr(self, "crashed", False):
            self.crashed = True
            self.restart()  # back at checkpoint 4, then applies 4 and 5 without complaint
        return super().apply(iteration, updates)


def test_a_restart_seen_only_at_the_next_checkpoint_rewinds_once_and_finishes(tmp_path):
    scheduler, state, learner, memory, pool = _setup(tmp_path, "sync")
    scheduler.learner = learner = RestartBeforeApply(learner.core)
    scheduler.checkpointer.learner = learner
    final = scheduler.run(state)
    assert scheduler.restarts == 1 and learner.reloads == 1
    assert final.counts.applied == final.counts.completed == 32
    assert learner.core.current_version("metanas") == 8


def test_a_meta_learner_that_cannot_rewind_makes_the_campaign_fail_instead_of_looping(tmp_path):
    scheduler, state, learner, memory, pool = _setup(tmp_path, "sync")
    stuck = RestartBeforeApply(learner.core)
    stuck.reload = lambda: stuck.core.incarnation  # the bug: it kept its versions after a rewind
    scheduler.learner = scheduler.checkpointer.learner = stuck
    with pytest.raises(RuntimeError, match=f"rewound {MAX_REWINDS} times"):
        scheduler.run(state)


@pytest.mark.parametrize("updates", ["sync", "async"])
def test_a_new_scheduler_resumes_from_the_latest_checkpoint_without_rerunning_finished_tasks(
    tmp_path, updates
):
    def stop(task):
        if task.iteration == 5:
            raise KeyboardInterrupt  # the driver dies mid-campaign

    scheduler, state, learner, memory, pool = _setup(tmp_path, updates, pool=FakePool(before=stop))
    with pytest.raises(KeyboardInterrupt):
        scheduler.run(state)
    resumed_state = scheduler.checkpointer.latest()
    assert resumed_state.iteration == 4
    scheduler2, _, learner2, memory2, pool2 = _setup_resumed(tmp_path, updates)
    final = scheduler2.run(resumed_state)
    assert final.counts.completed == 32 and final.counts.applied == 32
    assert not any(it < 4 for (_, it, _) in pool2.runs)


def _setup_resumed(tmp_path, updates):
    """A fresh driver on the same run directory: its MetaLearner starts from the checkpoint."""
    plan = TrainPlan(8, 2, 2, updates, MetaSchedule(8, 1.0, 0.5))
    settings = AsyncSettings(2, 2, "downweight") if updates == "async" else None
    learner = LocalLearner(MetaLearnerCore(plan.schedule, str(tmp_path), settings))
    memory, pool = Memory(), FakePool()
    checkpointer = Checkpointer(RunDir(tmp_path), learner, memory, wall_before=1.0)
    return (
        MetaTrainLoop(plan, pool, learner, checkpointer, WorkerTally([replace(WORKER, pid=99)]), Bar()),
        None,
        learner,
        memory,
        pool,
    )
