"""The TaskWorker actors of a campaign and the loop that feeds them tasks.

`run` hands each task to the least-loaded healthy worker, at most two calls in flight per
worker (one running, one queued behind it to hide the round trip), and reports every
finished try as an `Attempt`. A call carries one task, or several meta-training tasks of
one learner (`CallSizer`: Ray's cost is per call). A task lost with its worker process is
queued again (same task, hence the same episode) up to `task_retries` times; that worker
is suspect and gets no new task until it answers a ping (Ray restarted it), so a worker
that cannot come back (its node is gone) never swallows the retries. Every wait is
bounded.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from metanas.cluster.actors import TaskWorker
from metanas.cluster.call_size import CallSizer, most_tasks_per_call
from metanas.cluster.messages import Attempt, Outcome, TrainTask, ValidationTask, WorkerInfo
from metanas.cluster.placement import auto_worker_count, missing_resources
from metanas.cluster.schema import Campaign

log = logging.getLogger(__name__)

WAIT_TIMEOUT_S = 600.0  # no task may take longer, and no lost worker stay away longer
CALLS_PER_WORKER = 2  # in flight: one running, one queued behind it to hide the round trip


class WorkerPool:
    def __init__(
        self,
        campaign: Campaign,
        slowdown: dict[int, float] | None = None,
        limits: Sequence[dict] = (),
        zero_cost: bool = False,
    ) -> None:
        """`slowdown` (benchmarks only): worker index -> factor, to simulate a slower device;
        `zero_cost` (benchmarks only): tasks return a precomputed update at once.
        `limits`: the campaign's hardware limits (`CostLimit.to_dict`), built on the driver."""
        w = campaign.workers
        self.settings = w
        self.task_retries = campaign.meta_train.task_retries
        self.count = (
            w.count
            if w.count != "auto"
            else auto_worker_count(w.cpus_per_worker, w.gpus_per_worker, ray.cluster_resources())
        )
        # SPREAD puts workers on distinct nodes where it can (a node lost costs fewer
        # workers); PACK leaves Ray's default, which fills nodes one after another.
        strategy = "SPREAD" if w.placement == "spread" else "DEFAULT"
        config = campaign.model_dump(mode="json")
        self.workers = [
            TaskWorker.options(
                num_cpus=w.cpus_per_worker, num_gpus=w.gpus_per_worker, scheduling_strategy=strategy
            ).remote(config, i, w.cpus_per_worker, (slowdown or {}).get(i, 1.0), list(limits), zero_cost)
            for i in range(self.count)
        ]
        self.suspects: dict[int, Any] = {}  # worker index -> ping ref, for workers that lost a task
        mt = campaign.meta_train
        most = most_tasks_per_call(mt.updates, mt.meta_batch, self.count, CALLS_PER_WORKER)
        self.sizer = CallSizer(mt.call_s, most, calls_in_flight=CALLS_PER_WORKER * self.count)
        self.calls = 0  # worker calls made (several tasks each, where the sizer says so)

    def wait_started(self) -> list[WorkerInfo]:
        """Wait until every worker has started and built its task pools; name the resources
        when the cluster cannot place them instead of hanging."""
        w = self.settings
        try:
            return ray.get([actor.info.remote() for actor in self.workers], timeout=w.start_timeout_s)
        except GetTimeoutError:
            raise TimeoutError(
                f"the {self.count} TaskWorkers did not start within "
                f"workers.start_timeout_s={w.start_timeout_s:g} s: "
                + missing_resources(self.count, w.cpus_per_worker, w.gpus_per_worker, ray.cluster_resources())
            ) from None

    def close(self) -> None:
        for actor in self.workers:
            ray.kill(actor)

    def _take(self, queue: deque) -> list:
        """The next call's tasks from the front of `queue`: meta-training tasks of one
        learner (they share its parameters) as many as the sizer says; any other, alone."""
        tasks = [queue.popleft()]
        if isinstance(tasks[0], TrainTask):
            key = _learner_key(tasks[0])
            ahead = (_learner_key(t) for t in queue if isinstance(t, TrainTask))
            size = self.sizer.size(key, len(queue), ahead)
            while len(tasks) < size and queue and isinstance(queue[0], TrainTask):
                if _learner_key(queue[0]) != key:
                    break
                tasks.append(queue.popleft())
        return tasks

    def _start(self, tasks: list, w: int, args: tuple) -> tuple[Any, list]:
        """Submit `tasks` to worker `w` in one call; return (result ref, update refs: one
        per meta-training task, None for other tasks)."""
        self.calls += 1
        first, actor = tasks[0], self.workers[w]
        if isinstance(first, TrainTask):
            call = actor.meta_train.options(num_returns=len(tasks) + 1)
            *update_refs, result_ref = call.remote(tasks, *args)
            return result_ref, update_refs
        if isinstance(first, ValidationTask):
            return actor.validate.remote(first, *args), [None]
        return actor.meta_test.remote(first, *args), [None]

    def run(self, queue: deque, args_for: Callable[[Any], tuple], what: str) -> Iterator[Attempt]:
        """Run the tasks of `queue` (the caller may put more in while iterating); yield an
        `Attempt` per finished try. `args_for(task)` gives the parameters it runs on, read
        when the task is handed out (the first task's, for a call of several)."""
        in_flight: dict[Any, tuple[list, int, list]] = {}
        load = [0] * len(self.workers)
        attempts: dict[Any, int] = defaultdict(int)

        def fill() -> None:
            while queue:
                healthy = [w for w in range(len(load)) if w not in self.suspects]
                if not healthy:
                    return
                w = min(healthy, key=load.__getitem__)
                if load[w] >= CALLS_PER_WORKER:
                    return
                tasks = self._take(queue)
                result_ref, update_refs = self._start(tasks, w, args_for(tasks[0]))
                in_flight[result_ref] = (tasks, w, update_refs)
                load[w] += 1

        fill()
        # Pushed back whenever a call finishes or a worker comes back: a failed ping alone
        # is no progress, so a worker that can never return cannot keep this loop alive.
        deadline = time.time() + WAIT_TIMEOUT_S
        while in_flight or (queue and self.suspects):
            pings = {ref: w for w, ref in self.suspects.items()}
            ready = []
            if time.time() < deadline:  # (a failed ping is always ready: check the clock too)
                ready, _ = ray.wait(
                    list(in_flight) + list(pings), num_returns=1, timeout=deadline - time.time()
                )
            if not ready:
                raise TimeoutError(
                    f"{what}: no task finished within {WAIT_TIMEOUT_S:.0f} s and no lost worker came back; "
                    "are the workers' resources available? (see `ray status`)"
                )
            if ready[0] in pings:
                if self._ping_answered(pings[ready[0]], ready[0]):
                    deadline = time.time() + WAIT_TIMEOUT_S
                fill()
                continue
            deadline = time.time() + WAIT_TIMEOUT_S
            tasks, w, update_refs = in_flight.pop(ready[0])
            load[w] -= 1
            yield from self._finish(tasks, w, ready[0], update_refs, attempts, queue)
            fill()

    def _ping_answered(self, w: int, ping: Any) -> bool:
        """True if suspect worker `w` is back in service."""
        try:
            ray.get(ping)
        except RayActorError:
            # still restarting, or cannot be placed again (its node is gone): ask again
            self.suspects[w] = self.workers[w].info.remote()
            time.sleep(0.5)
            return False
        del self.suspects[w]
        log.info("worker %d is back", w)
        return True

    def _finish(
        self, tasks: list, w: int, result_ref: Any, update_refs: list, attempts: dict, queue: deque
    ) -> list[Attempt]:
        """An `Attempt` per task of a finished call."""
        try:
            result = ray.get(result_ref)
        except RayActorError as err:
            self.suspects.setdefault(w, self.workers[w].info.remote())
            return [self._lost(task, err, attempts, queue) for task in reversed(tasks)][::-1]
        except RayTaskError as err:
            error = str(err).splitlines()[0]
            log.error("tasks %s failed: %s", tasks, error)
            return [Attempt(task, Outcome.FAILED, error=error) for task in tasks]
        if not isinstance(result, list):  # a validation or meta-test task's
            return [Attempt(tasks[0], Outcome.COMPLETED, result)]
        out = []
        for task, one, update_ref in zip(tasks, result, update_refs):
            if isinstance(one, str):  # the task raised on the worker
                log.error("task %s failed: %s", task, one)
                out.append(Attempt(task, Outcome.FAILED, error=one))
                continue
            self.sizer.saw(_learner_key(task), one.task_seconds)
            out.append(Attempt(task, Outcome.COMPLETED, one, update_ref))
        return out

    def _lost(self, task: Any, err: Exception, attempts: dict, queue: deque) -> Attempt:
        """`task` was lost with its worker's process: queued again (first), or failed
        after `task_retries` tries. (Called last task first, so the queue keeps their order.)"""
        attempts[task] += 1
        if attempts[task] > self.task_retries:
            log.error("task %s failed after %d retries: %s", task, self.task_retries, err)
            return Attempt(task, Outcome.FAILED, error=f"its worker died {attempts[task]} times")
        log.warning("a worker died during task %s; retrying", task)
        queue.appendleft(task)  # next: in async mode the queue holds the whole campaign
        return Attempt(task, Outcome.RETRIED)


def _learner_key(task: TrainTask) -> tuple:
    """Meta-training tasks with the same key run on the same parameters."""
    return task.learner, task.derived
