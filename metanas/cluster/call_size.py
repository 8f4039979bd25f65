"""How many meta-training tasks one worker call carries (`meta_train.call_s`), free of Ray.

Each call costs Ray and the driver a few milliseconds of CPU on every process it touches
(the worker's executor, the driver's submit and wait), whatever the call holds: one 35 ms
task pays about a tenth of its time again, eight of them a hundredth. So a call carries
as many tasks of one learner as take about `call_s` (the nearest count) at that
learner's measured task time, and never more than:
- `most` (`most_tasks_per_call`): sync, an iteration's meta_batch; async, few enough that
  a call's last task starts about one meta-step staler than it would alone;
- its share of the work left in the queue, in seconds, over the calls in flight (guided
  self-scheduling): as a queue runs out calls shrink, so the workers finish an iteration
  (sync) or the campaign together, even when its last tasks are its longest.
A learner's first call carries one task: its time is not known yet.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable


def most_tasks_per_call(updates: str, meta_batch: int, workers: int, calls_per_worker: int) -> int:
    """Sync: an iteration's tasks of a learner (meta_batch) all start from the same
    parameters, so a call may carry all of them. Async: a call's tasks all start from the
    parameters of its hand-out, and a worker holds `calls_per_worker` calls: a task may
    start up to calls_per_worker * k - 1 tasks after its hand-out instead of
    calls_per_worker - 1, while the workers send calls_per_worker * (k - 1) * workers more
    updates, that many / meta_batch meta-steps. At most one more step of staleness allows
    k = 1 + meta_batch / (calls_per_worker * workers)."""
    if updates == "sync":
        return meta_batch
    return 1 + meta_batch // max(1, calls_per_worker * workers)


class CallSizer:
    def __init__(self, call_s: float, most: int, calls_in_flight: int) -> None:
        """`calls_in_flight`: how many calls the pool keeps out at once (all workers)."""
        self.call_s, self.most, self.calls_in_flight = call_s, max(1, most), max(1, calls_in_flight)
        self.task_s: dict[Hashable, float] = {}  # learner key -> its tasks' recent mean time

    def size(self, key: Hashable, queued: int, ahead: Iterable[Hashable]) -> int:
        """Tasks for the next call of learner `key`, with `queued` tasks behind its first;
        `ahead`: their learner keys, read only near the queue's end (a campaign's queue
        may hold thousands of tasks)."""
        seconds = self.task_s.get(key)
        if not self.call_s or seconds is None:
            return 1
        seconds = max(seconds, 1e-6)
        fit = round(self.call_s / seconds)
        # the work left past which the share cannot bind (fit x seconds: a rounded-up count
        # may take more than call_s)
        enough = fit * seconds * self.calls_in_flight
        shortest = min(min(self.task_s.values()), self.call_s)
        if (queued + 1) * shortest < enough:
            work = seconds
            for other in ahead:
                if work >= enough:
                    break
                work += self.task_s.get(other, self.call_s)  # (a learner not measured yet: a whole call)
            if work < enough:
                fit = min(fit, int(work / self.calls_in_flight / seconds + 1e-9))
        return max(1, min(self.most, fit))

    def saw(self, key: Hashable, seconds: float) -> None:
        """A task of learner `key` took `seconds` (an average that follows a drift, as when
        the supernet's architecture steps start after the warm-up)."""
        before = self.task_s.get(key)
        self.task_s[key] = seconds if before is None else 0.8 * before + 0.2 * seconds
