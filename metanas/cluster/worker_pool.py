"""The TaskWorker actors of a campaign and the loop that feeds them tasks.

`run` hands each task to the least-loaded healthy worker, at most two in flight per worker
(one running, one queued behind it to hide the round trip), and reports every finished try
as an `Attempt`. A task lost with its worker process is queued again (same task, hence the
same episode) up to `task_retries` times; that worker is suspect and gets no new task until
it answers a ping (Ray restarted it), so a worker that cannot come back (its node is gone)
never swallows the retries. Every wait is bounded.
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
from metanas.cluster.messages import Attempt, Outcome, TrainTask, ValidationTask, WorkerInfo
from metanas.cluster.placement import auto_worker_count, missing_resources
from metanas.cluster.schema import Campaign

log = logging.getLogger(__name__)

WAIT_TIMEOUT_S = 600.0  # no task may take longer, and no lost worker stay away longer


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

    def _start(self, task: Any, w: int, args: tuple) -> tuple[Any, Any]:
        """Submit `task` to worker `w`; return (result ref, update ref or None)."""
        if isinstance(task, TrainTask):
            update_ref, result_ref = self.workers[w].meta_train.remote(task, *args)
            return result_ref, update_ref
        if isinstance(task, ValidationTask):
            return self.workers[w].validate.remote(task, *args), None
        return self.workers[w].meta_test.remote(task, *args), None

    def run(self, queue: deque, args_for: Callable[[Any], tuple], what: str) -> Iterator[Attempt]:
        """Run the tasks of `queue` (the caller may put more in while iterating); yield an
        `Attempt` per finished try. `args_for(task)` gives the parameters it runs on, read
        when the task is handed out."""
        in_flight: dict[Any, tuple[Any, int, Any]] = {}
        load = [0] * len(self.workers)
        attempts: dict[Any, int] = defaultdict(int)

        def fill() -> None:
            while queue:
                healthy = [w for w in range(len(load)) if w not in self.suspects]
                if not healthy:
                    return
                w = min(healthy, key=load.__getitem__)
                if load[w] >= 2:
                    return
                task = queue.popleft()
                result_ref, update_ref = self._start(task, w, args_for(task))
                in_flight[result_ref] = (task, w, update_ref)
                load[w] += 1

        fill()
        # Pushed back whenever a task finishes or a worker comes back: a failed ping alone
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
            task, w, update_ref = in_flight.pop(ready[0])
            load[w] -= 1
            yield self._finish(task, w, ready[0], update_ref, attempts, queue)
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
        self, task: Any, w: int, result_ref: Any, update_ref: Any, attempts: dict, queue: deque
    ) -> Attempt:
        try:
            result = ray.get(result_ref)
        except RayActorError as err:
            attempts[task] += 1
            self.suspects.setdefault(w, self.workers[w].info.remote())
            if attempts[task] > self.task_retries:
                log.error("task %s failed after %d retries: %s", task, self.task_retries, err)
                return Attempt(task, Outcome.FAILED, error=f"its worker died {attempts[task]} times")
            log.warning("a worker died during task %s; retrying", task)
            queue.appendleft(task)  # next: in async mode the queue holds the whole campaign
            return Attempt(task, Outcome.RETRIED)
        except RayTaskError as err:
            error = str(err).splitlines()[0]
            log.error("task %s failed: %s", task, error)
            return Attempt(task, Outcome.FAILED, error=error)
        return Attempt(task, Outcome.COMPLETED, result, update_ref)
