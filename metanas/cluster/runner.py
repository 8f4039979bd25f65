"""The cluster side of one campaign: start the actors, meta-train, meta-test, return the
results (the platform writes the report).

    runner = CampaignRunner(campaign, RunDir(out))
    try:
        result = runner.run(checkpoint)     # checkpoint: None, or the one to resume from
    finally:
        runner.close()

The driver never copies tensors: the meta-parameters are ObjectRefs from the MetaLearner,
and each worker's update ref goes straight back to it.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from metanas.cluster.actors import MemoryWriter, MetaLearner
from metanas.cluster.checkpointer import Checkpointer, write_initial_checkpoint
from metanas.cluster.connect import connect
from metanas.cluster.messages import Outcome, TestResult, TestTask, WorkerInfo
from metanas.cluster.remote import RemoteMemory, RemoteMetaLearner
from metanas.cluster.run_dir import Checkpoint, RunDir
from metanas.cluster.scheduler import MetaTrainScheduler
from metanas.cluster.schema import LEARNERS, Campaign
from metanas.cluster.train_state import TrainPlan, TrainState, WorkerTally, meta_train_summary
from metanas.cluster.worker_pool import WorkerPool

log = logging.getLogger(__name__)


@dataclass
class CampaignResult:
    meta_train: dict[str, Any]  # summary.json's meta_train section
    curve: list[dict[str, float]]  # per iteration, each learner's query accuracy before adaptation
    tests: list[TestResult]  # one per held-out task, in task order
    genotype: tuple[str, ...]  # the meta-learned architecture (argmax of the meta-learned alpha)


def _progress(total: int, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, unit="it", dynamic_ncols=True)


class CampaignRunner:
    def __init__(
        self, campaign: Campaign, run_dir: RunDir, address: str | None = None, progress: bool = True,
        slowdown: dict[int, float] | None = None,
    ) -> None:
        """`slowdown` (benchmarks only): worker index -> factor, to simulate a slower device."""
        self.campaign = campaign
        self.run_dir = run_dir
        self.progress = progress
        self.plan = TrainPlan.from_campaign(campaign)
        connect(address)
        self.pool = WorkerPool(campaign, slowdown)
        # The central actors live on the driver's node: a worker node that dies does not
        # take them along, and their checkpoint and memory files land on the driver's disk.
        self.home = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        memory = campaign.memory or str(run_dir.root / "memory")
        self.memory = RemoteMemory(MemoryWriter.options(num_cpus=0, scheduling_strategy=self.home).remote(memory))
        self.learner: RemoteMetaLearner | None = None
        self.worker_info: list[WorkerInfo] = []
        self.state: TrainState | None = None

    def close(self) -> None:
        self.pool.close()
        for actor in [self.memory.actor] + ([self.learner.actor] if self.learner else []):
            ray.kill(actor)

    def start(self, checkpoint: Checkpoint | None = None) -> None:
        """Start the MetaLearner (from `checkpoint`, or from a fresh iteration-0 checkpoint)
        and wait until it and every worker are up. Idempotent; benchmarks call it before
        their clock starts, as starting processes that import torch is a one-off cost."""
        if self.learner is not None:
            return
        if checkpoint is not None:
            log.info("resuming from the checkpoint at iteration %d", checkpoint.iteration)
            self.state = TrainState.from_json(checkpoint.state)
        else:
            params = {name: self._initial_params(name) for name in LEARNERS}
            self.state = write_initial_checkpoint(self.run_dir, params)
        mt = self.campaign.meta_train
        settings = None
        if mt.updates == "async":
            settings = {"meta_batch": mt.meta_batch, "max_staleness": mt.max_staleness, "stale_policy": mt.stale_policy}
        actor = MetaLearner.options(num_cpus=0, scheduling_strategy=self.home).remote(
            asdict(self.plan.schedule), str(self.run_dir.root), settings
        )
        self.learner = RemoteMetaLearner(actor)
        self.worker_info = self.pool.wait_started()
        # The MetaLearner and the memory are up too (a memory that cannot be opened fails now).
        self.learner.incarnation()
        self.memory.count()

    def _initial_params(self, learner: str) -> dict:
        """Both learners start from the same seed-determined initialisation."""
        from metanas.searchers.darts.adaptation import get_params

        return get_params(self.campaign.model_spec(learner).build(seed=self.campaign.seed))

    def meta_train(self, checkpoint: Checkpoint | None = None) -> tuple[dict[str, Any], list[dict[str, float]]]:
        """Meta-train to the end of the campaign; return (summary, curve)."""
        self.start(checkpoint)
        state = self.state
        resumed_from = state.iteration
        checkpointer = Checkpointer(self.run_dir, self.learner, self.memory, wall_before=state.wall_s)
        bar = _progress(self.plan.iterations, state.iteration, "meta-train", self.progress)
        scheduler = MetaTrainScheduler(self.plan, self.pool, self.learner, checkpointer, WorkerTally(self.worker_info), bar)
        try:
            state = scheduler.run(state)
        finally:
            bar.close()
        return meta_train_summary(self.plan, state, scheduler.restarts, resumed_from), state.curve

    def meta_test(self) -> tuple[list[TestResult], tuple[str, ...]]:
        """Score every held-out task with every method; return (results, meta genotype)."""
        c = self.campaign
        refs = {name: self.learner.params(name) for name in LEARNERS}
        genotype = c.space.cell_space().derive_genotype(self.learner.alpha("metanas"))
        queue = deque(TestTask(i) for i in range(c.meta_test.tasks))
        results = []
        bar = _progress(c.meta_test.tasks, 0, "meta-test", self.progress)
        for attempt in self.pool.run(queue, lambda task: (refs["metanas"], refs["reptile_fixed"]), "meta-test"):
            if attempt.outcome is Outcome.FAILED:
                raise RuntimeError(f"meta-test task {attempt.task.index} failed: {attempt.error}")
            if attempt.outcome is Outcome.COMPLETED:
                results.append(attempt.result)
                bar.update(1)
        bar.close()
        return sorted(results, key=lambda r: r.index), genotype

    def run(self, checkpoint: Checkpoint | None = None) -> CampaignResult:
        meta_train, curve = self.meta_train(checkpoint)
        tests, genotype = self.meta_test()
        return CampaignResult(meta_train, curve, tests, genotype)
