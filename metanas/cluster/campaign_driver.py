"""The cluster side of one campaign: start the actors, meta-train, meta-test, return the
results (the platform writes the report).

Meta-training has two stages, as MetaNAS' pipeline: first the supernet and the fixed
baselines side by side; then the discrete network of the architecture the supernet found
(`metanas_derived`), meta-trained the same way with the same budget, its checkpoints under
OUT/derived/. Then the learning curves (every meta-trained learner at every validation
checkpoint, on fixed validation episodes) and meta-test (every evaluation).

    runner = CampaignDriver(campaign, RunDir(out))
    try:
        result = runner.run(checkpoint)     # checkpoint: None, or the one to resume from
    finally:
        runner.close()

The driver never copies tensors: the meta-parameters are ObjectRefs from the MetaLearner,
and each worker's update ref goes straight back to it.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, defaultdict, deque
from dataclasses import asdict, dataclass, field
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from metanas._util.stats import mean_ci95
from metanas.cluster.actors import MemoryWriter, MetaLearner
from metanas.cluster.checkpointer import Checkpointer, write_initial_checkpoint
from metanas.cluster.connect import connect
from metanas.cluster.events import EventLog
from metanas.cluster.hardware import campaign_limits
from metanas.cluster.messages import Outcome, TestResult, TestTask, ValidationTask, WorkerInfo
from metanas.cluster.meta_train_loop import MetaTrainLoop
from metanas.cluster.node_aggregator import NodeAggregator
from metanas.cluster.remote import RemoteMemory, RemoteMetaLearner
from metanas.cluster.run_dir import Checkpoint, RunDir
from metanas.cluster.schema import DERIVED, Campaign
from metanas.cluster.train_state import TrainPlan, TrainState, WorkerTally, meta_train_summary
from metanas.cluster.wire import pack
from metanas.cluster.worker_pool import WAIT_TIMEOUT_S, WorkerPool
from metanas.searchers.darts.cost import genotype_within

log = logging.getLogger(__name__)


@dataclass
class CampaignResult:
    meta_train: dict[str, Any]  # summary.json's meta_train section (the first stage's, plus `derived_stage`)
    curve: list[dict[str, float]]  # per iteration, each learner's query accuracy before adaptation
    tests: list[TestResult]  # one per held-out task and evaluation, in (evaluation, task) order
    genotype: tuple[str, ...]  # the meta-learned architecture (argmax of the meta-learned alpha)
    validation: list[dict[str, Any]] = field(default_factory=list)  # the learning curves


def _progress(total: int, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, unit="it", dynamic_ncols=True)


@dataclass
class Stage:
    """One meta-training stage: its plan, its run directory and its MetaLearner."""

    plan: TrainPlan
    run_dir: RunDir
    learner: RemoteMetaLearner
    state: TrainState


class CampaignDriver:
    def __init__(
        self,
        campaign: Campaign,
        run_dir: RunDir,
        address: str | None = None,
        progress: bool = True,
        slowdown: dict[int, float] | None = None,
        zero_cost: bool = False,
    ) -> None:
        """`slowdown` (benchmarks only): worker index -> factor, to simulate a slower device;
        `zero_cost` (benchmarks only): meta-training tasks cost nothing (`TaskWorker`)."""
        self.campaign = campaign
        self.run_dir = run_dir
        self.progress = progress
        self.plan = TrainPlan.from_campaign(campaign)
        self.limits = campaign_limits(campaign, run_dir.root)  # (before Ray: profiling wants a quiet machine)
        connect(address)
        self.pool = WorkerPool(campaign, slowdown, [limit.to_dict() for limit in self.limits], zero_cost)
        # The central actors live on the driver's node: a worker node that dies does not
        # take them along, and their checkpoint and memory files land on the driver's disk.
        self.home = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        memory = campaign.memory or str(run_dir.root / "memory")
        self.memory = RemoteMemory(
            MemoryWriter.options(num_cpus=0, scheduling_strategy=self.home).remote(memory)
        )
        self.stages: list[Stage] = []
        self.worker_info: list[WorkerInfo] = []

    @property
    def learner(self) -> RemoteMetaLearner | None:
        """The first stage's MetaLearner (the supernet's)."""
        return self.stages[0].learner if self.stages else None

    @property
    def state(self) -> TrainState | None:
        return self.stages[0].state if self.stages else None

    def close(self) -> None:
        self.pool.close()
        for actor in [self.memory.actor] + [stage.learner.actor for stage in self.stages]:
            ray.kill(actor)
        for stage in self.stages:
            for aggregator in stage.learner.aggregators.values():
                ray.kill(aggregator)

    def _start_aggregators(self, learner: RemoteMetaLearner) -> None:
        """`aggregation: node`: one aggregator on each node with workers, batching up to
        that node's worker count (once per stage)."""
        if self.campaign.meta_train.aggregation != "node" or learner.aggregators:
            return
        workers_on = Counter(info.node_id for info in self.worker_info)
        linger = self.campaign.meta_train.aggregation_linger_s
        learner.aggregators = {
            node: NodeAggregator.options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
            ).remote(learner.name, count, linger)
            for node, count in workers_on.items()
        }
        ray.get([a.node_id.remote() for a in learner.aggregators.values()], timeout=WAIT_TIMEOUT_S)

    def _start_stage(self, plan: TrainPlan, run_dir: RunDir, checkpoint: Checkpoint | None) -> Stage:
        """Start a stage's MetaLearner from `checkpoint`, or from a fresh iteration-0 one."""
        if checkpoint is not None:
            log.info("resuming %s from the checkpoint at iteration %d", run_dir.root, checkpoint.iteration)
            state = TrainState.from_json(checkpoint.state)
        else:
            params = {name: self.campaign.initial_params(name, plan.derived) for name in plan.learners}
            state = write_initial_checkpoint(run_dir, params)
        mt = self.campaign.meta_train
        settings = None
        if mt.updates == "async":
            settings = {
                "meta_batch": mt.meta_batch,
                "max_staleness": mt.max_staleness,
                "stale_policy": mt.stale_policy,
            }
        # (named: a node's aggregator finds it again after either of them restarted)
        name = f"metanas-meta-learner-{uuid.uuid4().hex[:12]}"
        actor = MetaLearner.options(name=name, num_cpus=0, scheduling_strategy=self.home).remote(
            asdict(plan.schedule), str(run_dir.root), settings, plan.learners
        )
        stage = Stage(plan, run_dir, RemoteMetaLearner(actor, plan.learners, name=name), state)
        self.stages.append(stage)
        return stage

    def start(self, checkpoint: Checkpoint | None = None) -> None:
        """Start the first stage's MetaLearner and wait until it and every worker are up.
        Idempotent; benchmarks call it before their clock starts, as starting processes
        that import torch is a one-off cost."""
        if self.stages:
            return
        self._start_stage(self.plan, self.run_dir, checkpoint)
        self.worker_info = self.pool.wait_started()
        self._start_aggregators(self.learner)
        # The MetaLearner and the memory are up too (a memory that cannot be opened fails now).
        self.learner.incarnation()
        self.memory.count()

    def _train(self, stage: Stage, desc: str) -> tuple[dict[str, Any], list[dict[str, float]]]:
        self._start_aggregators(stage.learner)
        state = stage.state
        resumed_from = state.iteration
        checkpointer = Checkpointer(stage.run_dir, stage.learner, self.memory, wall_before=state.wall_s)
        bar = _progress(stage.plan.iterations, state.iteration, desc, self.progress)
        events = EventLog(self.run_dir.root, "derived" if stage.plan.derived else "first")
        scheduler = MetaTrainLoop(
            stage.plan, self.pool, stage.learner, checkpointer, WorkerTally(self.worker_info), bar, events
        )
        try:
            stage.state = scheduler.run(state)
        finally:
            bar.close()
            events.close()
        summary = meta_train_summary(stage.plan, stage.state, scheduler.restarts, resumed_from)
        load = stage.learner.load()  # (since the MetaLearner last started)
        summary["meta_learner_received"] = {k: load[k] for k in ("calls", "arrays", "updates")}
        return summary, stage.state.curve

    def meta_train(
        self, checkpoint: Checkpoint | None = None
    ) -> tuple[dict[str, Any], list[dict[str, float]]]:
        """Meta-train the first stage to its end; return (summary, curve)."""
        self.start(checkpoint)
        return self._train(self.stages[0], "meta-train")

    def genotype(self) -> tuple[str, ...]:
        """The architecture the meta-learned supernet derives (argmax of its alpha,
        projected within the campaign's hardware limits)."""
        return genotype_within(self.campaign.space.cell_space(), self.learner.arch("metanas"), self.limits)

    def derived_stage(self) -> dict[str, Any]:
        """The second stage: meta-train the derived network; return its summary."""
        genotype = self.genotype()
        run_dir = RunDir(self.run_dir.root / "derived")
        plan = TrainPlan.from_campaign(self.campaign, derived=genotype)
        stage = self._start_stage(plan, run_dir, run_dir.latest_checkpoint())
        summary, _ = self._train(stage, "meta-train derived")
        return {**summary, "genotype": list(genotype)}

    def validation_curves(self) -> list[dict[str, Any]]:
        """Every meta-trained learner at every validation checkpoint, on the same fixed
        validation episodes: [{"iteration", "accuracy": {learner: {"mean", "ci95"}}}]."""
        v = self.campaign.meta_train.validation
        if v is None:
            return []
        every = v.every or self.campaign.meta_train.checkpoint_every
        queue, refs = deque(), {}
        for stage in self.stages:
            for checkpoint in stage.run_dir.checkpoints_list():
                if checkpoint.iteration % every and checkpoint.iteration != stage.plan.iterations:
                    continue
                for name in stage.plan.learners:
                    refs[name, checkpoint.iteration] = ray.put(pack(checkpoint.params(name)))
                    queue.extend(
                        ValidationTask(name, checkpoint.iteration, e, stage.plan.derived)
                        for e in range(v.episodes)
                    )
        accs: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        bar = _progress(len(queue), 0, "validation", self.progress)
        for attempt in self.pool.run(queue, lambda t: (refs[t.learner, t.iteration],), "validation"):
            if attempt.outcome is Outcome.FAILED:
                raise RuntimeError(f"validation task {attempt.task} failed: {attempt.error}")
            if attempt.outcome is Outcome.COMPLETED:
                accs[attempt.task.iteration][attempt.task.learner].append(attempt.result.accuracy)
                bar.update(1)
        bar.close()
        return [
            {"iteration": it, "accuracy": {name: mean_ci95(values) for name, values in accs[it].items()}}
            for it in sorted(accs)
        ]

    def meta_test(self) -> tuple[list[TestResult], tuple[str, ...]]:
        """Score every held-out task of every evaluation with every method; return
        (results, meta genotype)."""
        c = self.campaign
        learners = {name: stage.learner for stage in self.stages for name in stage.plan.learners}
        args = tuple(learners[name].params(name) for name in c.meta_trained())
        genotype = self.genotype()
        derived = genotype if DERIVED in learners else None
        queue = deque(
            TestTask(i, e, derived) for e, ev in enumerate(c.evaluations()) for i in range(ev.tasks)
        )
        results = []
        bar = _progress(len(queue), 0, "meta-test", self.progress)
        for attempt in self.pool.run(queue, lambda task: args, "meta-test"):
            if attempt.outcome is Outcome.FAILED:
                raise RuntimeError(f"meta-test task {attempt.task.index} failed: {attempt.error}")
            if attempt.outcome is Outcome.COMPLETED:
                results.append(attempt.result)
                bar.update(1)
        bar.close()
        return sorted(results, key=lambda r: (r.evaluation, r.index)), genotype

    def run(self, checkpoint: Checkpoint | None = None) -> CampaignResult:
        meta_train, curve = self.meta_train(checkpoint)
        if DERIVED in self.campaign.meta_trained():
            meta_train["derived_stage"] = self.derived_stage()
        validation = self.validation_curves()
        tests, genotype = self.meta_test()
        return CampaignResult(meta_train, curve, tests, genotype, validation)
