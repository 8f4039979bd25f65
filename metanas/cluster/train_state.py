"""Meta-training's plan and bookkeeping (no Ray here).

`TrainState` is what a checkpoint's JSON file holds besides the tensors: the counters, the
curve, the finished tasks (async), the worker processes seen and the time spent. A resumed
or rewound campaign goes on from exactly that state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from metanas.cluster.messages import SubmitReply, TrainResult, TrainTask, WorkerInfo
from metanas.cluster.schema import Campaign
from metanas.searchers.darts.reptile import KeySet, MetaSchedule, UpdateOutcome


@dataclass(frozen=True)
class TrainPlan:
    """What meta-training runs: iterations of `meta_batch` tasks per learner. A campaign
    has one plan per stage: the first stage's learners side by side, then the network
    derived from the supernet (`derived`: its genotype)."""

    iterations: int
    meta_batch: int
    checkpoint_every: int
    updates: str  # "sync" or "async"
    schedule: MetaSchedule
    learners: tuple[str, ...] = ("metanas", "reptile_fixed")
    derived: tuple[str, ...] | None = None

    @classmethod
    def from_campaign(cls, campaign: Campaign, derived: tuple[str, ...] | None = None) -> TrainPlan:
        """The first stage's plan, or with `derived` the second stage's."""
        mt = campaign.meta_train
        learners = campaign.first_stage() if derived is None else ("metanas_derived",)
        return cls(
            mt.iterations,
            mt.meta_batch,
            mt.checkpoint_every,
            mt.updates,
            campaign.meta_schedule(),
            learners,
            derived,
        )

    @property
    def per_iteration(self) -> int:
        return self.meta_batch * len(self.learners)

    def task(self, number: int) -> TrainTask:
        """Task `number` of the campaign, in sync order: (iteration, learner, slot)."""
        iteration, rest = divmod(number, self.per_iteration)
        learner, slot = divmod(rest, self.meta_batch)
        return TrainTask(
            self.learners[learner], iteration, slot, self.schedule.alpha_active(iteration), self.derived
        )

    def number(self, task: TrainTask) -> int:
        return (
            task.iteration * self.per_iteration
            + self.learners.index(task.learner) * self.meta_batch
            + task.slot
        )


@dataclass
class Counters:
    """What happened to meta-training's tasks and updates (names are the checkpoint's keys)."""

    completed: int = 0
    failed: int = 0
    retried: int = 0
    applied: int = 0  # updates that reached the meta-parameters
    stale: int = 0  # async updates older than max_staleness (down-weighted or dropped)
    dropped: int = 0
    duplicate: int = 0
    staleness_total: int = 0
    staleness_max: int = 0
    inner_ms: int = 0
    task_ms: int = 0
    learner_ms: dict[str, int] = field(default_factory=dict)  # task time per learner

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Counters:
        ints = {f.name: int(data.get(f.name, 0)) for f in dataclasses.fields(cls) if f.name != "learner_ms"}
        return cls(**ints, learner_ms={k: int(v) for k, v in data.get("learner_ms", {}).items()})

    def copy(self) -> Counters:
        return dataclasses.replace(self, learner_ms=dict(self.learner_ms))

    def count_result(self, result: TrainResult) -> None:
        self.completed += 1
        # rounded, not truncated: truncating lost half a millisecond per task on average,
        # 0.5% of a 100 ms task, which bench scaling counted as Ray's overhead
        self.inner_ms += round(result.seconds * 1000)
        self.task_ms += round(result.task_seconds * 1000)
        name = result.task.learner
        self.learner_ms[name] = self.learner_ms.get(name, 0) + round(result.task_seconds * 1000)

    def count_update(self, reply: SubmitReply) -> None:
        outcome = reply.outcome
        if outcome is not UpdateOutcome.DUPLICATE:
            self.staleness_total += reply.staleness
            self.staleness_max = max(self.staleness_max, reply.staleness)
        # A duplicate's key got in before: its task was sent once already and that reply was
        # lost (with a node's aggregator killed after forwarding it), so the task re-ran.
        # Its update is in the meta-parameters once, and the driver had not counted it.
        self.applied += int(outcome.counts or outcome is UpdateOutcome.DUPLICATE)
        self.stale += outcome in (UpdateOutcome.DOWNWEIGHTED, UpdateOutcome.DROPPED)
        self.dropped += outcome is UpdateOutcome.DROPPED
        self.duplicate += outcome is UpdateOutcome.DUPLICATE


@dataclass
class TrainState:
    iteration: int = 0  # meta-iterations' worth of tasks finished
    curve: list[dict[str, float]] = field(default_factory=list)
    counts: Counters = field(default_factory=Counters)
    workers: list[dict[str, Any]] = field(default_factory=list)  # every worker process seen
    wall_s: float = 0.0  # meta-training time over every session of the campaign
    finished: KeySet = field(default_factory=KeySet)  # async: task numbers done
    open_accs: dict[int, dict[str, list[float]]] = field(default_factory=dict)  # async: unfinished iterations
    meta_learner: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "curve": self.curve,
            "counts": dataclasses.asdict(self.counts),
            "workers": self.workers,
            "wall_s": self.wall_s,
            "finished": self.finished.to_json(),
            "open_accs": {str(k): v for k, v in self.open_accs.items()},
            "meta_learner": self.meta_learner,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainState:
        return cls(
            iteration=int(data["iteration"]),
            curve=list(data.get("curve", [])),
            counts=Counters.from_json(data.get("counts", {})),
            workers=list(data.get("workers", [])),
            wall_s=float(data.get("wall_s", 0.0)),
            finished=KeySet.from_json(data.get("finished")),
            open_accs={int(k): v for k, v in data.get("open_accs", {}).items()},
            meta_learner=dict(data.get("meta_learner", {})),
        )


def curve_row(iteration: int, accs: dict[str, list[float]], learners: tuple[str, ...]) -> dict[str, float]:
    """One point of the meta-training curve: each learner's mean query accuracy (before
    adaptation) over the iteration's tasks."""
    row: dict[str, float] = {"iteration": iteration}
    for name in learners:
        values = accs.get(name, [])
        row[name] = sum(values) / len(values) if values else float("nan")
    return row


class WorkerTally:
    """Tasks per worker process, restarted processes included."""

    def __init__(self, started: list[WorkerInfo]) -> None:
        self.info = {w.pid: w for w in started}
        self.tasks: dict[int, int] = {}

    def load(self, workers: list[dict[str, Any]]) -> None:
        self.tasks = {w["pid"]: w["tasks"] for w in workers}

    def count(self, worker: WorkerInfo | None) -> None:
        if worker is not None:
            self.info[worker.pid] = worker
            self.tasks[worker.pid] = self.tasks.get(worker.pid, 0) + 1

    def merge(self, previous: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Worker processes of earlier (killed) driver sessions keep their entries; ours
        are refreshed."""
        kept = [w for w in previous if w["pid"] not in self.info]
        return kept + [
            # (gpu_ids as a list: the summary reads back from JSON as it was written)
            {**dataclasses.asdict(w), "gpu_ids": list(w.gpu_ids), "tasks": self.tasks.get(pid, 0)}
            for pid, w in self.info.items()
        ]


def meta_train_summary(plan: TrainPlan, state: TrainState, rewinds: int, resumed_from: int) -> dict[str, Any]:
    """summary.json's `meta_train` section."""
    c = state.counts
    return {
        "iterations": plan.iterations,
        "updates": plan.updates,
        "tasks_planned": plan.iterations * plan.per_iteration,
        "tasks_completed": c.completed,
        "tasks_failed": c.failed,
        "tasks_retried": c.retried,
        "updates_applied": c.applied,
        "updates_duplicate": c.duplicate,  # (async: counted in updates_applied, see count_update)
        # async only: updates more than max_staleness meta-steps old (down-weighted or dropped)
        "stale_updates": c.stale,
        "stale_updates_dropped": c.dropped,
        # how many meta-steps old the async updates were (0 for sync), to tune max_staleness
        "staleness_mean": round(c.staleness_total / max(1, c.completed), 3),
        "staleness_max": c.staleness_max,
        "meta_learner_restarts": rewinds,
        "resumed_from_iteration": resumed_from,
        "wall_s": round(state.wall_s, 2),
        "inner_loop_s": round(c.inner_ms / 1000.0, 2),
        "task_s": round(c.task_ms / 1000.0, 2),
        "learner_task_s": {name: round(ms / 1000.0, 2) for name, ms in c.learner_ms.items()},
        "workers": state.workers,
    }
