"""Meta-training scheduling, free of Ray: which tasks run, when the meta-parameters step,
and what happens when the MetaLearner restarts. Tested against an in-process pool.

- sync: an iteration's `meta_batch` tasks per learner, a barrier, one Reptile step.
- async: every task of the campaign streams through the workers with no barrier; each
  update goes to the MetaLearner as it arrives (staleness-weighted, at most once per task
  key). Tasks keep their sync numbering (iteration, learner, slot), so a task has the same
  episode in both modes, and checkpoints keep the set of finished tasks.
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
    def apply(self, iteration: int, updates: dict[str, list]) -> list[int]: ...
    def submit(
        self, learner: str, key: int, base_version: int, update: Any, incarnation: str
    ) -> SubmitReply: ...
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
            updates: dict[str, list] = defaultdict(list)
            accs: dict[str, list[float]] = defaultdict(list)
            for attempt in self.pool.run(
                queue, lambda t, theta=theta: (theta[t.learner],), f"meta-train iteration {iteration}"
            ):
                if self._count(attempt) and attempt.outcome is Outcome.COMPLETED:
                    updates[attempt.task.learner].append(attempt.update)
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
        plan = self.plan
        total = plan.iterations * plan.per_iteration
        finished, open_accs, curve = state.finished, state.open_accs, list(state.curve)
        queue = deque(plan.task(n) for n in finished.missing(total))

        def args_for(task: TrainTask) -> tuple:
            # Read when the task is handed out; the version travels with the task so the
            # MetaLearner can measure its staleness.
            version, theta = self.learner.snapshot(task.learner)
            return theta, version

        every = plan.checkpoint_every
        next_checkpoint = (len(finished) // plan.per_iteration // every + 1) * every
        for attempt in self.pool.run(queue, args_for, "meta-train"):
            task = attempt.task
            if not self._count(attempt):
                continue
            if attempt.outcome is Outcome.COMPLETED:
                if not self._submit(task, attempt):
                    self.counts.completed -= 1  # its update was lost with its node: run it again
                    self.counts.retried += 1
                    queue.appendleft(task)
                    continue
                open_accs.setdefault(task.iteration, {}).setdefault(task.learner, []).append(
                    attempt.result.query_accuracy
                )
            finished.add(plan.number(task))
            first = task.iteration * plan.per_iteration
            if all(n in finished for n in range(first, first + plan.per_iteration)):
                curve.append(curve_row(task.iteration, open_accs.pop(task.iteration, {}), plan.learners))
                self._show(curve[-1])
                curve.sort(key=lambda r: r["iteration"])
            progress = len(finished) // plan.per_iteration
            self.bar.update(progress - self.bar.n)
            if progress >= next_checkpoint or len(finished) == total:
                if len(finished) == total:
                    self.learner.flush()
                state = self._checkpoint(
                    dataclasses.replace(
                        state, iteration=progress, curve=curve, finished=finished, open_accs=open_accs
                    )
                )
                next_checkpoint = (progress // every + 1) * every
        return state

    def _submit(self, task: TrainTask, attempt: Attempt) -> bool:
        """Hand one task's update to the MetaLearner; False if it was lost with its node."""
        key = task.iteration * self.plan.meta_batch + task.slot
        try:
            reply = self.learner.submit(
                task.learner, key, attempt.result.base_version, attempt.update, self.incarnation
            )
        except UpdateLost:
            return False
        if reply.incarnation != self.incarnation:
            raise MetaLearnerRestarted()
        self.counts.count_update(reply)
        self.events(
            {
                "kind": "update",
                "learner": task.learner,
                "staleness": reply.staleness,
                "outcome": reply.outcome.value,
            }
        )
        return True
