"""Meta-training scheduling, free of Ray: which tasks run, when the meta-parameters step,
and what happens when the MetaLearner restarts. Tested against an in-process pool.

- sync: an iteration's `meta_batch` tasks per learner, a barrier, one Reptile step.
- async: every task of the campaign streams through the workers with no barrier; each
  update goes to the MetaLearner as it arrives (staleness-weighted, at most once per task
  key), without waiting for the reply; a task is finished when its reply is in, and all
  are in before a checkpoint. Tasks keep their sync numbering (iteration, learner, slot),
  so a task has the same episode in both modes, and checkpoints keep the set of finished
  tasks.
- rewinds: when the MetaLearner restarted (or lost an update), it and the scheduler both go
  back to the newest complete checkpoint and re-run the tasks since; the MetaLearner reloads
  it even if it restarted from it already, because it may have applied updates since (a
  restart seen only at the next checkpoint). After `MAX_REWINDS` the campaign fails.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from metanas.cluster.checkpointer import Checkpointer
from metanas.cluster.messages import (
    Attempt,
    MetaLearnerRestarted,
    NodeUpdate,
    Outcome,
    SaveReply,
    SubmitReply,
    TrainTask,
    UpdateLost,
)
from metanas.cluster.train_state import Counters, TrainPlan, TrainState, WorkerTally, curve_row

log = logging.getLogger(__name__)

MAX_REWINDS = 8  # a campaign that keeps rewinding makes no progress: fail instead of looping


class Pool(Protocol):
    """Runs tasks on workers (`WorkerPool`; an in-process fake in tests)."""

    def run(self, queue: deque, args_for: Callable[[Any], tuple], what: str) -> Iterator[Attempt]: ...


class MetaLearnerHandle(Protocol):
    """The MetaLearner as the scheduler sees it (`RemoteMetaLearner`; in tests the same
    logic in process). Parameters and updates are opaque handles, never copied here."""

    def params(self, learner: str) -> Any: ...
    def snapshot(self, learner: str) -> tuple[Any, Any]: ...
    def apply(self, iteration: int, updates: dict[str, list[NodeUpdate]]) -> list[int]: ...
    def send(self, learner: str, key: int, base_version: int, update: NodeUpdate, incarnation: str) -> Any:
        """Hand one task's update on without waiting; returns a ticket for `replies`."""

    def replies(self, tickets: list, wait: bool) -> list[tuple[Any, SubmitReply | UpdateLost]]:
        """The replies in among `tickets` (with `wait`: all of them), each a `SubmitReply`
        or an `UpdateLost` when the update was lost on the way."""

    def flush(self) -> None: ...
    def save(self, path: str, incarnation: str) -> SaveReply: ...
    def reload(self) -> str: ...
    def incarnation(self) -> str: ...


class MetaTrainLoop:
    """Called once per driver session: `run` meta-trains to the end, checkpointing as it
    goes; `restarts` counts the rewinds."""

    def __init__(
        self,
        plan: TrainPlan,
        pool: Pool,
        learner: MetaLearnerHandle,
        checkpointer: Checkpointer,
        tally: WorkerTally,
        bar: Any,
        events: Callable[[dict], None] = lambda event: None,
    ) -> None:
        """`events` receives one dict per task try, async update and rewind (the run's
        event log)."""
        self.plan = plan
        self.events = events
        self.pool = pool
        self.learner = learner
        self.checkpointer = checkpointer
        self.tally = tally
        self.bar = bar  # a tqdm-like progress bar (update, reset, set_postfix)
        self.restarts = 0
        self.counts = Counters()
        self.records: list = []  # memory records of the tasks since the last checkpoint

    def run(self, state: TrainState) -> TrainState:
        """Meta-train from `state` to the end of the campaign, rewinding as needed."""
        while True:
            self.counts = state.counts.copy()  # a copy: a rewind goes back to it
            self.tally.load(state.workers)
            self.records = []
            self.incarnation = self.learner.incarnation()
            try:
                return self._sync(state) if self.plan.updates == "sync" else self._async(state)
            except MetaLearnerRestarted as err:
                self.restarts += 1
                if self.restarts > MAX_REWINDS:
                    raise RuntimeError(
                        f"meta-training rewound {MAX_REWINDS} times ({err}); giving up"
                    ) from err
                self.learner.reload()
                state = self.checkpointer.latest()
                self.events({"kind": "rewind", "to_iteration": state.iteration, "reason": str(err)})
                log.warning("%s; re-running from iteration %d", err, state.iteration)
                self.bar.reset(total=self.plan.iterations)
                self.bar.update(state.iteration)

    def _count(self, attempt: Attempt) -> bool:
        """Count one try of a task; True when the task is done (completed or failed)."""
        task, result = attempt.task, attempt.result
        self.events(
            {
                "kind": "task",
                "learner": task.learner,
                "iteration": task.iteration,
                "slot": task.slot,
                "outcome": attempt.outcome.value,
                "worker": result.worker.worker_id if result and result.worker else None,
                "seconds": round(result.task_seconds or result.seconds, 4) if result else None,
            }
        )
        if attempt.outcome is Outcome.RETRIED:
            self.counts.retried += 1
            return False
        if attempt.outcome is Outcome.FAILED:
            self.counts.failed += 1
            return True
        result = attempt.result
        self.counts.count_result(result)
        self.tally.count(result.worker)
        if result.record is not None:
            self.records.append(result.record)
        return True

    def _checkpoint(self, state: TrainState) -> TrainState:
        state = self.checkpointer.save(state, self.counts, self.tally, self.incarnation, self.records)
        self.records = []
        return state

    def _show(self, row: dict[str, float]) -> None:
        self.bar.set_postfix(**{name: f"{row[name]:.3f}" for name in self.plan.learners})

    def _sync(self, state: TrainState) -> TrainState:
        plan = self.plan
        curve = list(state.curve)
        for iteration in range(state.iteration, plan.iterations):
            theta = {name: self.learner.params(name) for name in plan.learners}
            # Longest tasks first (the supernet's), so the iteration does not end on one.
            queue = deque(plan.task(iteration * plan.per_iteration + k) for k in range(plan.per_iteration))
            updates: dict[str, list[NodeUpdate]] = defaultdict(list)
            accs: dict[str, list[float]] = defaultdict(list)
            for attempt in self.pool.run(
                queue, lambda t, theta=theta: (theta[t.learner],), f"meta-train iteration {iteration}"
            ):
                if self._count(attempt) and attempt.outcome is Outcome.COMPLETED:
                    node = attempt.result.worker.node_id if attempt.result.worker else ""
                    updates[attempt.task.learner].append(NodeUpdate(node, attempt.update))
                    accs[attempt.task.learner].append(attempt.result.query_accuracy)
            try:
                versions = self.learner.apply(iteration, updates)
            except UpdateLost as err:
                # The MetaLearner may have stepped one learner and not the other: back to the
                # last checkpoint, as after a crash (async mode just re-runs the task).
                raise MetaLearnerRestarted(str(err)) from None
            if any(v != iteration + 1 for v in versions):
                raise MetaLearnerRestarted()
            self.counts.applied += sum(len(u) for u in updates.values())
            curve.append(curve_row(iteration, accs, plan.learners))
            self._show(curve[-1])
            self.bar.update(1)
            done = iteration + 1
            if done % plan.checkpoint_every == 0 or done == plan.iterations:
                state = self._checkpoint(dataclasses.replace(state, iteration=done, curve=curve))
        return state

    def _async(self, state: TrainState) -> TrainState:
        return _AsyncPass(self, state).run()


class _AsyncPass:
    """Async meta-training from `state` to the end (or to a rewind). Updates go out without
    waiting for their replies, so the workers never wait on the MetaLearner and a node's
    aggregator can combine several. A task counts as finished when its reply is in, and
    every reply is in before a checkpoint: a checkpoint holds exactly the updates of its
    finished tasks."""

    def __init__(self, loop: MetaTrainLoop, state: TrainState) -> None:
        self.loop, self.plan, self.state = loop, loop.plan, state
        self.total = self.plan.iterations * self.plan.per_iteration
        self.finished, self.open_accs, self.curve = state.finished, state.open_accs, list(state.curve)
        self.queue = deque(self.plan.task(n) for n in self.finished.missing(self.total))
        self.pending: dict[Any, tuple[TrainTask, Attempt]] = {}  # sent, no reply yet
        self.next_checkpoint = self._checkpoint_after(len(self.finished) // self.plan.per_iteration)
        self.saved = len(self.finished)  # finished tasks in the last checkpoint (`state` is one)

    def run(self) -> TrainState:
        loop = self.loop
        while True:
            for attempt in loop.pool.run(self.queue, self._args_for, "meta-train"):
                if loop._count(attempt):
                    if attempt.outcome is Outcome.COMPLETED:
                        self._send(attempt)
                    else:
                        self._finish(attempt.task)
                self._take_replies(wait=False)
                self._checkpoint_if_due()
            self._take_replies(wait=True)  # a lost update puts its task back in the queue
            self._checkpoint_if_due()
            if not self.queue:
                return self.state

    def _args_for(self, task: TrainTask) -> tuple:
        # Read when the task is handed out; the version travels with the task so the
        # MetaLearner can measure its staleness.
        version, theta = self.loop.learner.snapshot(task.learner)
        return theta, version

    def _checkpoint_after(self, progress: int) -> int:
        every = self.plan.checkpoint_every
        return (progress // every + 1) * every

    def _send(self, attempt: Attempt) -> None:
        task, result = attempt.task, attempt.result
        key = task.iteration * self.plan.meta_batch + task.slot
        node = result.worker.node_id if result.worker else ""
        ticket = self.loop.learner.send(
            task.learner, key, result.base_version, NodeUpdate(node, attempt.update), self.loop.incarnation
        )
        self.pending[ticket] = (task, attempt)

    def _take_replies(self, wait: bool) -> None:
        """Count the replies that are in (with `wait`: all of them)."""
        if not self.pending:
            return
        loop = self.loop
        for ticket, reply in loop.learner.replies(list(self.pending), wait):
            task, attempt = self.pending.pop(ticket)
            if isinstance(reply, UpdateLost):  # lost with its node (or its aggregator): run it again
                loop.counts.completed -= 1
                loop.counts.retried += 1
                self.queue.appendleft(task)
                continue
            if reply.incarnation != loop.incarnation:
                raise MetaLearnerRestarted()
            loop.counts.count_update(reply)
            loop.events(
                {
                    "kind": "update",
                    "learner": task.learner,
                    "staleness": reply.staleness,
                    "outcome": reply.outcome.value,
                }
            )
            accs = self.open_accs.setdefault(task.iteration, {}).setdefault(task.learner, [])
            accs.append(attempt.result.query_accuracy)
            self._finish(task)

    def _finish(self, task: TrainTask) -> None:
        """`task` is done: its update is in (or it failed); its iteration may be complete."""
        plan = self.plan
        self.finished.add(plan.number(task))
        first = task.iteration * plan.per_iteration
        if all(n in self.finished for n in range(first, first + plan.per_iteration)):
            accs = self.open_accs.pop(task.iteration, {})
            self.curve.append(curve_row(task.iteration, accs, plan.learners))
            self.loop._show(self.curve[-1])
            self.curve.sort(key=lambda r: r["iteration"])
        bar = self.loop.bar
        bar.update(len(self.finished) // plan.per_iteration - bar.n)

    def _checkpoint_if_due(self) -> None:
        per, done = self.plan.per_iteration, len(self.finished)
        if done == self.saved and not self.pending:
            return  # (nothing since the last checkpoint: the campaign's end was saved already)
        if (done + len(self.pending)) // per < self.next_checkpoint and done + len(self.pending) < self.total:
            return
        self._take_replies(wait=True)  # then the MetaLearner holds exactly the finished tasks' updates
        done = len(self.finished)
        progress = done // per
        if progress < self.next_checkpoint and done < self.total:
            return  # an update was lost: its task runs again first
        if done == self.total:
            self.loop.learner.flush()
        self.state = self.loop._checkpoint(
            dataclasses.replace(
                self.state,
                iteration=progress,
                curve=self.curve,
                finished=self.finished,
                open_accs=self.open_accs,
            )
        )
        self.next_checkpoint = self._checkpoint_after(progress)
        self.saved = done
