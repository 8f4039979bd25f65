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
from metanas.cluster.schema import LEARNERS, Campaign
from metanas.searchers.darts.reptile import KeySet, MetaSchedule, UpdateOutcome


@dataclass(frozen=True)
class TrainPlan:
    """What meta-training runs: iterations of `meta_batch` tasks per learner."""

    iterations: int
    meta_batch: int
    checkpoint_every: int
    updates: str  # "sync" or "async"
    schedule: MetaSchedule

    @classmethod
    def from_campaign(cls, campaign: Campaign) -> "TrainPlan":
        mt = campaign.meta_train
        schedule = MetaSchedule(mt.iterations, mt.beta_w, mt.beta_alpha, mt.beta_final_fraction, mt.alpha_warmup)
        return cls(mt.iterations, mt.meta_batch, mt.checkpoint_every, mt.updates, schedule)

    @property
    def per_iteration(self) -> int:
        return self.meta_batch * len(LEARNERS)

    def task(self, number: int) -> TrainTask:
        """Task `number` of the campaign, in sync order: (iteration, learner, slot)."""
        iteration, rest = divmod(number, self.per_iteration)
        learner, slot = divmod(rest, self.meta_batch)
        return TrainTask(LEARNERS[learner], iteration, slot, self.schedule.alpha_active(iteration))

    def number(self, task: TrainTask) -> int:
        return task.iteration * self.per_iteration + LEARNERS.index(task.learner) * self.meta_batch + task.slot


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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Counters":
        return cls(**{f.name: int(data.get(f.name, 0)) for f in dataclasses.fields(cls)})

    def count_result(self, result: TrainResult) -> None:
        self.completed += 1
        self.inner_ms += int(result.seconds * 1000)
        self.task_ms += int(result.task_seconds * 1000)

    def count_update(self, reply: SubmitReply) -> None:
        outcome = reply.outcome
        if outcome is not UpdateOutcome.DUPLICATE:
            self.staleness_total += reply.staleness
            self.staleness_max = max(self.staleness_max, reply.staleness)
        self.applied += outcome.counts
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
            "iteration": self.iteration, "curve": self.curve, "counts": dataclasses.asdict(self.counts),
            "workers": self.workers, "wall_s": self.wall_s, "finished": self.finished.to_json(),
            "open_accs": {str(k): v for k, v in self.open_accs.items()}, "meta_learner": self.meta_learner,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainState":
        return cls(
            iteration=int(data["iteration"]), curve=list(data.get("curve", [])),
            counts=Counters.from_json(data.get("counts", {})), workers=list(data.get("workers", [])),
            wall_s=float(data.get("wall_s", 0.0)), finished=KeySet.from_json(data.get("finished")),
            open_accs={int(k): v for k, v in data.get("open_accs", {}).items()},
            meta_learner=dict(data.get("meta_learner", {})),
        )


def curve_row(iteration: int, accs: dict[str, list[float]]) -> dict[str, float]:
    """One point of the meta-training curve: each learner's mean query accuracy (before
    adaptation) over the iteration's tasks."""
    row: dict[str, float] = {"iteration": iteration}
    for name in LEARNERS:
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
        return kept + [{**dataclasses.asdict(w), "tasks": self.tasks.get(pid, 0)} for pid, w in self.info.items()]


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
        "workers": state.workers,
    }
