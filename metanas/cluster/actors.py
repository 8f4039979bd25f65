"""Thin Ray actors around the Ray-free logic in `metanas.platform`.

TaskWorker: runs inner loops (meta-training) and held-out evaluations (meta-test).
MetaLearner: owns the meta-parameters of every learner and applies Reptile updates.
Tensors travel as ObjectRefs: the driver hands a worker's update ref straight to the
MetaLearner and never copies the tensors itself.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from typing import Any

import ray

log = logging.getLogger(__name__)


@ray.remote(max_restarts=3, max_task_retries=0)
class TaskWorker:
    """One per worker slot. Restarted by Ray if its process dies; the driver re-submits the
    task that was lost (same iteration and slot, hence the same episode)."""

    def __init__(self, campaign: dict[str, Any], worker_id: int, cpus: float) -> None:
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
        self.runner = TaskRunner(Campaign.model_validate(campaign), device=device)

    def info(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "device": self.device,
        }

    @ray.method(num_returns=2)
    def meta_train(self, learner: str, theta: dict, iteration: int, slot: int, update_alpha: bool):
        delta, outcome = self.runner.meta_train_task(learner, theta, iteration, slot, update_alpha)
        return delta, {**asdict(outcome), **self.info()}

    def meta_test(self, index: int, metanas_params: dict, fixed_params: dict) -> dict[str, Any]:
        out = self.runner.meta_test_task(index, {"metanas": metanas_params, "reptile_fixed": fixed_params})
        return {**out, "pid": os.getpid(), "worker_id": self.worker_id}


@ray.remote(max_restarts=3, max_task_retries=3)
class MetaLearner:
    """Holds versioned meta-parameters per learner. `apply` is idempotent per iteration: an
    update for an iteration that was already applied is ignored, so a retried call can never
    apply the same meta-update twice. If its process dies, Ray restarts it and it reloads
    the newest complete checkpoint of `run_dir`; the driver sees the older version and
    re-runs the iterations since then."""

    def __init__(self, schedule: dict[str, Any], run_dir: str) -> None:
        """Starts (and restarts) from the newest complete checkpoint of `run_dir`: the driver
        writes an iteration-0 checkpoint before creating this actor, so the constructor
        takes no tensors (Ray could not restart an actor whose arguments were lost)."""
        from metanas.platform.campaign import RunDir
        from metanas.platform.reptile import MetaSchedule
        from metanas.platform.task_runner import LEARNERS

        checkpoint = RunDir(run_dir).latest_checkpoint()
        if checkpoint is None:
            raise RuntimeError(f"{run_dir}: no checkpoint to start the MetaLearner from")
        params = {name: checkpoint.params(name) for name in LEARNERS}
        iteration = checkpoint.iteration
        self.params = params
        self.schedule = MetaSchedule(**schedule)
        self.version = {name: iteration for name in params}

    def pid(self) -> int:
        return os.getpid()

    def get(self, learner: str) -> dict:
        return self.params[learner]

    def alpha(self, learner: str):
        return self.params[learner]["alpha"]

    def apply(self, learner: str, iteration: int, *deltas: dict) -> int:
        from metanas.platform.reptile import reptile_step

        if iteration != self.version[learner]:
            log.warning("ignoring update for %s iteration %d (at version %d)", learner, iteration, self.version[learner])
            return self.version[learner]
        beta_w, beta_alpha = self.schedule.betas(iteration)
        self.params[learner] = reptile_step(self.params[learner], list(deltas), beta_w, beta_alpha)
        self.version[learner] = iteration + 1
        return self.version[learner]

    def save(self, path: str) -> dict[str, int]:
        """Write every learner's parameters to one safetensors file ('learner/param' keys)."""
        from metanas.platform.checkpoint import save_tensors

        save_tensors(path, {f"{name}/{k}": v for name, p in self.params.items() for k, v in p.items()})
        return dict(self.version)


@ray.remote(max_restarts=3, max_task_retries=3)
class MemoryWriter:
    """The single writer of a task memory: producers anywhere in the cluster append
    through it, so Parquet parts are never written concurrently. Appends are idempotent by
    record key, which makes Ray's automatic retries safe."""

    def __init__(self, path: str) -> None:
        from metanas.memory.store import MemoryStore

        self.store = MemoryStore(path)

    def append(self, records: list) -> int:
        return self.store.append(records)

    def count(self) -> int:
        return len(self.store)
