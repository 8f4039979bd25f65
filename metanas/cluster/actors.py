"""Thin Ray actors around the Ray-free logic in `metanas.platform`.

TaskWorker: runs inner loops (meta-training) and held-out evaluations (meta-test).
MetaLearner: owns the meta-parameters of every learner and applies Reptile updates.
Tensors travel as ObjectRefs: the driver hands a worker's update ref straight to the
MetaLearner and never copies the tensors itself.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import asdict
from typing import Any

import ray

log = logging.getLogger(__name__)


def to_wire(params: dict) -> dict:
    """Parameters travel between actors as numpy arrays: Ray serializes those about 5x
    faster than torch tensors (1 ms vs 5.7 ms for the demo supernet's 40 tensors), which
    matters for tasks of 30 ms."""
    return {k: v.detach().cpu().numpy() for k, v in params.items()}


def from_wire(arrays: dict) -> dict:
    import numpy as np
    import torch

    # A copy: arrays read from Ray's object store are read-only.
    return {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}


@ray.remote(max_restarts=3, max_task_retries=0)
class TaskWorker:
    """One per worker slot. Restarted by Ray if its process dies; the driver re-submits the
    task that was lost (same iteration and slot, hence the same episode)."""

    def __init__(self, campaign: dict[str, Any], worker_id: int, cpus: float, slowdown: float = 1.0) -> None:
        """`slowdown` > 1 (benchmarks only) makes every meta-training task take that many
        times as long, as on a slower device: the straggler that async updates tolerate."""
        import torch

        from metanas.platform.config import Campaign
        from metanas.platform.task_runner import TaskRunner

        # One intra-op thread per CPU Ray gave us: workers sharing a node must not fight.
        torch.set_num_threads(max(1, int(cpus)))
        gpu_ids = ray.get_gpu_ids()
        if gpu_ids and torch.cuda.is_available():
            device = "cuda"
        else:
            device = "cpu"
            if gpu_ids:
                log.warning("TaskWorker %d was assigned GPU %s but CUDA is unavailable: using the CPU", worker_id, gpu_ids)
        self.worker_id = worker_id
        self.device = device
        self.slowdown = slowdown
        self.runner = TaskRunner(Campaign.model_validate(campaign), device=device)
        self._info = {
            "worker_id": worker_id,
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "device": device,
        }

    def info(self) -> dict[str, Any]:
        return self._info

    @ray.method(num_returns=2)
    def meta_train(self, learner: str, theta: dict, iteration: int, slot: int, update_alpha: bool, base_version: int = 0):
        """Returns (update, outcome). `base_version` is the MetaLearner's version of `theta`,
        passed through so the MetaLearner can tell how stale the update is."""
        start = time.perf_counter()
        delta, outcome = self.runner.meta_train_task(learner, from_wire(theta), iteration, slot, update_alpha)
        delta = to_wire(delta)
        if self.slowdown > 1.0:
            time.sleep((self.slowdown - 1.0) * (time.perf_counter() - start))
        # task_seconds: all of the task's own work, parameter (de)conversion included;
        # the rest of the wall time is Ray's and the driver's (ray_overhead_fraction).
        out = {**asdict(outcome), **self._info, "base_version": base_version, "task_seconds": time.perf_counter() - start}
        return delta, out

    def meta_test(self, index: int, metanas_params: dict, fixed_params: dict) -> dict[str, Any]:
        params = {"metanas": from_wire(metanas_params), "reptile_fixed": from_wire(fixed_params)}
        out = self.runner.meta_test_task(index, params)
        return {**out, "pid": os.getpid(), "worker_id": self.worker_id}


@ray.remote(max_restarts=3, max_task_retries=3)
class MetaLearner:
    """Holds versioned meta-parameters per learner and applies Reptile updates, in one of
    two modes:

    - sync: `apply(learner, iteration, *updates)` takes a whole iteration's updates at once;
      an iteration that was already applied is ignored, so a retried call can never apply
      the same meta-update twice.
    - async: `submit(learner, key, base_version, update)` takes one task's update as it
      arrives (see `AsyncReptile`: staleness-weighted, at most once per task key).

    If its process dies, Ray restarts it and it reloads the newest complete checkpoint of
    `run_dir` (buffered async updates included) under a new `incarnation`; the driver sees
    the new incarnation (or an older version) and re-runs the work since that checkpoint."""

    def __init__(self, schedule: dict[str, Any], run_dir: str, async_updates: dict[str, Any] | None = None) -> None:
        """Starts (and restarts) from the newest complete checkpoint of `run_dir`: the driver
        writes an iteration-0 checkpoint before creating this actor, so the constructor
        takes no tensors (Ray could not restart an actor whose arguments were lost)."""
        from metanas.platform.campaign import RunDir
        from metanas.platform.reptile import AsyncReptile, KeySet, MetaSchedule, StalenessBound
        from metanas.platform.task_runner import LEARNERS

        self._args = (schedule, run_dir, async_updates)
        checkpoint = RunDir(run_dir).latest_checkpoint()
        if checkpoint is None:
            raise RuntimeError(f"{run_dir}: no checkpoint to start the MetaLearner from")
        self.incarnation = uuid.uuid4().hex
        self.schedule = MetaSchedule(**schedule)
        self.params = {name: checkpoint.params(name) for name in LEARNERS}
        self.version = {name: checkpoint.iteration for name in LEARNERS}
        self.streams: dict[str, Any] = {}
        if async_updates is not None:
            saved = checkpoint.state.get("meta_learner", {}).get("streams", {})
            bound = StalenessBound(async_updates["max_staleness"], async_updates["stale_policy"])
            for name in LEARNERS:
                mine = saved.get(name, {})
                self.streams[name] = AsyncReptile(
                    self.params[name],  # shared: the stream updates it in place
                    self.schedule,
                    async_updates["meta_batch"],
                    bound,
                    version=int(mine.get("version", 0)),
                    seen=KeySet.from_json(mine.get("seen")),
                    buffer=checkpoint.params(f"{name}@buffer") or None,
                    buffered=int(mine.get("buffered", 0)),
                )

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def reload(self) -> str:
        """Go back to the newest complete checkpoint, as after a restart; new incarnation."""
        self.__init__(*self._args)
        return self.incarnation

    def get_incarnation(self) -> str:
        return self.incarnation

    def _version(self, learner: str) -> int:
        return self.streams[learner].version if self.streams else self.version[learner]

    def get(self, learner: str) -> dict:
        return to_wire(self.params[learner])

    @ray.method(num_returns=2)
    def snapshot(self, learner: str):
        """(version, parameters): what an async task starts from."""
        return self._version(learner), to_wire(self.params[learner])

    def alpha(self, learner: str):
        return self.params[learner]["alpha"]

    def apply(self, learner: str, iteration: int, *deltas: dict) -> int:
        from metanas.platform.reptile import reptile_step

        if iteration != self.version[learner]:
            log.warning("ignoring update for %s iteration %d (at version %d)", learner, iteration, self.version[learner])
            return self.version[learner]
        beta_w, beta_alpha = self.schedule.betas(iteration)
        self.params[learner] = reptile_step(self.params[learner], [from_wire(d) for d in deltas], beta_w, beta_alpha)
        self.version[learner] = iteration + 1
        return self.version[learner]

    def submit(self, learner: str, key: int, base_version: int, delta: dict, incarnation: str) -> dict[str, Any]:
        """Take one async update. `incarnation` is the one the driver's bookkeeping matches:
        a call Ray retried into a restarted MetaLearner is refused, not applied, so the
        restarted one holds exactly its checkpoint until the driver has rewound to it."""
        if incarnation != self.incarnation:
            return {"outcome": "refused", "incarnation": self.incarnation}
        outcome, staleness = self.streams[learner].submit(key, base_version, from_wire(delta))
        return {"outcome": outcome, "staleness": staleness, "version": self._version(learner), "incarnation": self.incarnation}

    def flush(self) -> dict[str, int]:
        """End of meta-training: partially filled async buffers become a last meta-step."""
        for stream in self.streams.values():
            stream.flush()
        return {name: self._version(name) for name in self.params}

    def save(self, path: str, incarnation: str) -> dict[str, Any]:
        """Write every learner's parameters (and async buffers) to one safetensors file
        ('learner/param', 'learner@buffer/param'); return what the driver's state needs.
        Refused (nothing written) when the driver still counts on an earlier incarnation."""
        from metanas.platform.checkpoint import save_tensors

        if incarnation != self.incarnation:
            return {"incarnation": self.incarnation}

        tensors = {f"{name}/{k}": v for name, p in self.params.items() for k, v in p.items()}
        for name, stream in self.streams.items():
            tensors |= {f"{name}@buffer/{k}": v for k, v in stream.buffer.items()}
        save_tensors(path, tensors)
        return {
            "incarnation": self.incarnation,
            "versions": {name: self._version(name) for name in self.params},
            "streams": {name: stream.state() for name, stream in self.streams.items()},
        }


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
