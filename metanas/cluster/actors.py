"""Thin Ray actors around the Ray-free logic: `TaskWorkerCore`, `MetaLearnerCore`, `MemoryStore`.

TaskWorker: runs inner loops (meta-training) and held-out evaluations (meta-test).
MetaLearner: owns the meta-parameters of every learner and applies Reptile updates.
MemoryWriter: the single writer of a task memory.
Parameters and updates travel packed (`metanas.cluster.wire`: one float32 array each) as
ObjectRefs: the driver hands a worker's update ref straight to the MetaLearner and never
copies the tensors itself; the MetaLearner reads an update in place.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any

import ray

from metanas.cluster.messages import (
    SaveReply,
    SubmitReply,
    TestResult,
    TestTask,
    TrainTask,
    ValidationResult,
    ValidationTask,
    WorkerInfo,
)
from metanas.cluster.wire import INLINE_BYTES, Packed, mean_update, pack, unpack

log = logging.getLogger(__name__)


def read_update(delta: Packed | dict, layout: tuple[str, ...]) -> Any:
    """An update as the MetaLearner adds it, read in place: one flat tensor when it is
    packed in the learner's order, named views otherwise."""
    if isinstance(delta, Packed) and delta.names == layout:
        return delta.tensor()
    return unpack(delta)


@ray.remote(max_restarts=3, max_task_retries=0, max_concurrency=2)
class TaskWorker:
    """One per worker slot. Restarted by Ray if its process dies; the pool re-submits the
    task that was lost (same iteration and slot, hence the same episode)."""

    def __init__(
        self,
        campaign: dict[str, Any],
        worker_id: int,
        cpus: float,
        slowdown: float = 1.0,
        limits: list[dict] | None = None,
        zero_cost: bool = False,
    ) -> None:
        """`slowdown` > 1 (benchmarks only) makes every meta-training task take that many
        times as long, as on a slower device: the straggler that async updates tolerate.
        `zero_cost` (benchmarks only): a meta-training task skips its inner loop and returns
        a constant update through the same messages: the most a worker could send.
        `limits`: the campaign's hardware limits, as `CostLimit.to_dict` wrote them."""
        import torch

        from metanas.cluster.schema import Campaign
        from metanas.cluster.task_worker import TaskWorkerCore
        from metanas.searchers.darts.cost import CostLimit

        # One intra-op thread per CPU Ray gave us: workers sharing a node must not fight.
        torch.set_num_threads(max(1, int(cpus)))
        gpu_ids = ray.get_gpu_ids()
        device = "cuda" if gpu_ids and torch.cuda.is_available() else "cpu"
        if gpu_ids and device == "cpu":
            log.warning(
                "TaskWorker %d was assigned GPU %s but CUDA is unavailable: using the CPU", worker_id, gpu_ids
            )
        self.slowdown = slowdown
        # Two calls at a time (max_concurrency=2), one computing: Ray reads the next call's
        # arguments and sends the last one's results meanwhile, which the worker otherwise
        # waited for between calls (1.9% of its time with two workers on two cores).
        self.computing = threading.Lock()
        self.zero_cost = zero_cost
        limits = tuple(CostLimit.from_dict(d) for d in limits or ())
        self.runner = TaskWorkerCore(Campaign.model_validate(campaign), device=device, limits=limits)
        node = ray.get_runtime_context().get_node_id()
        self.info_ = WorkerInfo(worker_id, node, os.getpid(), device, tuple(str(g) for g in gpu_ids))

    def info(self) -> WorkerInfo:
        return self.info_

    def meta_train(self, tasks: list[TrainTask], theta: Packed, base_version: int = 0) -> tuple:
        """Each task's update, then the list of their results, as separate returns (the
        caller sets num_returns to len(tasks) + 1) so that every update travels on by
        reference on its own. `base_version` is the MetaLearner's version of `theta`,
        passed through so it can tell how stale an update is. A task that raises does not
        take the call's others with it: its update is None, its result the error's line."""
        updates, results = [], []
        with self.computing:
            for task in tasks:
                try:
                    delta, result = self._meta_train_one(task, theta)
                except Exception as err:  # (the others' work is kept; the pool fails this task)
                    log.exception("meta-training task %s failed", task)
                    updates.append(None)
                    results.append(f"{type(err).__name__}: {err}")
                    continue
                updates.append(delta)
                results.append(dataclasses.replace(result, base_version=base_version, worker=self.info_))
        return (*updates, results)

    def _meta_train_one(self, task: TrainTask, theta: Packed) -> tuple[Packed, Any]:
        if self.zero_cost:
            from metanas.cluster.task_worker import zero_cost_task

            return zero_cost_task(task, theta)
        start = time.perf_counter()
        delta, result = self.runner.meta_train_task(task, theta)
        if self.slowdown > 1.0:
            time.sleep((self.slowdown - 1.0) * (time.perf_counter() - start))
        # task_seconds: all of the task's own work; the rest of the wall time is Ray's and
        # the driver's (ray_overhead_fraction).
        return delta, dataclasses.replace(result, task_seconds=time.perf_counter() - start)

    def meta_test(self, task: TestTask, *params: dict) -> TestResult:
        """`params`: every meta-trained learner's, in `Campaign.meta_trained()` order (refs
        are resolved only as top-level arguments)."""
        names = self.runner.campaign.meta_trained()
        with self.computing:
            result = self.runner.meta_test_task(task, {name: unpack(p) for name, p in zip(names, params)})
        return dataclasses.replace(result, worker=self.info_)

    def validate(self, task: ValidationTask, params: dict) -> ValidationResult:
        with self.computing:
            result = self.runner.validation_task(task, unpack(params))
        return dataclasses.replace(result, worker=self.info_)


@ray.remote(max_restarts=3, max_task_retries=3)
class MetaLearner:
    """See `MetaLearnerCore`. If its process dies, Ray restarts it and the constructor
    reloads the newest complete checkpoint under a new incarnation; the driver notices
    and re-runs the work since. The constructor takes no tensors (the driver writes an
    iteration-0 checkpoint first), so Ray can always restart it."""

    def __init__(
        self,
        schedule: dict[str, Any],
        run_dir: str,
        async_settings: dict[str, Any] | None,
        learners: tuple[str, ...],
    ) -> None:
        from metanas.cluster.meta_learner import AsyncSettings, MetaLearnerCore
        from metanas.searchers.darts.reptile import MetaSchedule

        settings = AsyncSettings(**async_settings) if async_settings else None
        self.core = MetaLearnerCore(MetaSchedule(**schedule), run_dir, settings, learners)
        self.calls = self.arrays = self.stored = self.updates = 0

    def _received(self, arrays: list, updates: int) -> None:
        self.calls += 1
        self.arrays += len(arrays)
        # (Ray sends small arguments inside the call; larger ones the MetaLearner reads from
        # the object store, which costs it more per array: the capacity model counts both)
        self.stored += sum(getattr(a, "nbytes", 0) > INLINE_BYTES for a in arrays)
        self.updates += updates

    def load(self) -> dict[str, float]:
        """What this process has received so far (calls carrying updates; arrays in them: a
        task's update, a node's sum or a node's stack, and how many of them came through the
        object store; the tasks' updates in those) and the CPU seconds it has used: its
        utilisation over a span is the CPU seconds it used in it over the span
        (`metanas bench scaling --nodes`)."""
        return {
            "calls": self.calls,
            "arrays": self.arrays,
            "stored": self.stored,
            "updates": self.updates,
            "cpu_s": time.process_time(),
        }

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def reload(self) -> str:
        return self.core.reload()

    def get_incarnation(self) -> str:
        return self.core.incarnation

    def get(self, learner: str) -> Packed:
        return pack(self.core.params[learner])

    @ray.method(num_returns=2)
    def snapshot(self, learner: str):
        """(version, parameters): what async tasks start from (the driver asks once per
        version, `ParameterCache`)."""
        return self.core.current_version(learner), pack(self.core.params[learner])

    def arch(self, learner: str) -> dict:
        """The learner's architecture parameters ('alpha', and 'alpha_reduce' with reduction cells)."""
        from metanas.searchers.darts.reptile import is_arch_param

        return {k: v for k, v in self.core.params[learner].items() if is_arch_param(k)}

    def apply(self, learner: str, iteration: int, counts: list[int], *deltas: Packed) -> int:
        """One sync step on the mean of `deltas`; `counts[i]` tasks' updates are summed in
        `deltas[i]` (1 for a task's own; more for a node aggregator's sum)."""
        self._received(deltas, sum(counts))
        mean = [mean_update(list(deltas), counts)] if deltas else []
        return self.core.apply(learner, iteration, mean)

    def submit(
        self, learner: str, key: int, base_version: int, delta: Packed, incarnation: str
    ) -> SubmitReply:
        self._received([delta], 1)
        return self.core.submit(
            learner, key, base_version, read_update(delta, self.core.layout(learner)), incarnation
        )

    def layout(self, learner: str) -> tuple[str, ...]:
        """The order of the learner's parameters, in which its updates are packed."""
        return self.core.layout(learner)

    def submit_stack(
        self, learner: str, keys: list[int], base_versions: list[int], stack: Packed, incarnation: str
    ) -> list[SubmitReply]:
        """Updates stacked into one object (`stack_updates`), as a node's aggregator sends them."""
        if stack.names != self.core.layout(learner):
            raise ValueError(f"{learner}: a stack must be packed in the learner's order")
        self._received([stack], len(keys))
        rows = stack.tensor().view(len(keys), -1)
        return self.core.submit_stack(learner, keys, base_versions, rows, incarnation)

    def flush(self) -> dict[str, int]:
        return self.core.flush()

    def save(self, path: str, incarnation: str) -> SaveReply:
        return self.core.save(path, incarnation)


@ray.remote(max_restarts=3, max_task_retries=3)
class MemoryWriter:
    """The single writer of a task memory: producers anywhere in the cluster append
    through it, so Parquet parts are never written concurrently. Appends are idempotent by
    record key, which makes Ray's automatic retries safe."""

    def __init__(self, path: str) -> None:
        import faiss  # noqa: F401

        from metanas.memory.records import records_to_table
        from metanas.memory.store import MemoryStore

        self.store = MemoryStore(path)
        # Pay the lazy imports (faiss; pandas, which pyarrow pulls in to build a table:
        # 0.3 s) now, not in the first checkpoint of the campaign.
        records_to_table([])

    def append(self, records: list) -> int:
        return self.store.append(records)

    def count(self) -> int:
        return len(self.store)

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()
