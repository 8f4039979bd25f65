"""Typed records and signals the driver, the worker pool and the actors exchange (no Ray).

Tasks and results cross Ray (pickled frozen dataclasses); `Attempt` is what the pool
reports to the scheduler for each finished try of a task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from metanas.searchers.darts.reptile import UpdateOutcome

if TYPE_CHECKING:
    from metanas.memory.records import TaskRecord


@dataclass(frozen=True)
class WorkerInfo:
    worker_id: int
    node_id: str
    pid: int
    device: str  # "cpu" or "cuda"
    gpu_ids: tuple[str, ...] = ()  # the GPUs Ray gave it (a fraction of one, with gpus_per_worker < 1)


@dataclass(frozen=True)
class TrainTask:
    """One meta-training task: adapt `learner` on the episode of (iteration, slot). The
    episode is a function of these numbers, so a retried task sees the same data."""

    learner: str
    iteration: int
    slot: int
    update_alpha: bool = True
    derived: tuple[str, ...] | None = None  # the derived network's genotype (second stage)


@dataclass(frozen=True)
class TrainResult:
    task: TrainTask
    query_accuracy: float  # prototype head on the meta-parameters' features, before adaptation
    query_accuracy_after: float  # after adaptation (optimistic when the w steps saw the query)
    seconds: float  # inside the inner loop
    task_seconds: float = 0.0  # all of the task's own work, parameter conversion included
    base_version: int = 0  # the MetaLearner's version of the parameters it started from
    record: TaskRecord | None = None  # the supernet's task search, for the memory
    worker: WorkerInfo | None = None


@dataclass(frozen=True)
class TestTask:
    """One held-out meta-test episode, scored by every method."""

    __test__ = False  # not a pytest test class, whatever its name says

    index: int
    evaluation: int = 0  # which of the campaign's (n_way, k_shot) evaluations
    derived: tuple[str, ...] | None = None  # the derived network's genotype, if it was trained


@dataclass(frozen=True)
class TestResult:
    __test__ = False

    index: int
    accuracy: dict[str, float]  # method -> query accuracy
    genotype: tuple[str, ...]  # the architecture the supernet derived for this task
    worker: WorkerInfo | None = None
    evaluation: int = 0


@dataclass(frozen=True)
class ValidationTask:
    """One fixed validation episode scored by one meta-trained learner as it was at the
    checkpoint of `iteration` (for the learning curves)."""

    learner: str
    iteration: int
    episode: int
    derived: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ValidationResult:
    task: ValidationTask
    accuracy: float
    worker: WorkerInfo | None = None


class Outcome(Enum):
    """How one try of a task ended."""

    COMPLETED = "completed"
    FAILED = "failed"  # it raised (e.g. its loss diverged), or its worker died too often
    RETRIED = "retried"  # its worker died; the task is queued again


@dataclass(frozen=True)
class Attempt:
    task: Any  # TrainTask or TestTask
    outcome: Outcome
    result: TrainResult | TestResult | None = None
    update: Any = None  # a completed TrainTask's update, still where the worker left it
    error: str = ""


@dataclass(frozen=True)
class NodeUpdate:
    """A finished task's update (still where its worker left it) and the node it lies on:
    with node aggregation, that node's aggregator combines it with its neighbours'."""

    node: str
    update: Any


@dataclass(frozen=True)
class SubmitReply:
    """The MetaLearner's answer to one async update."""

    outcome: UpdateOutcome
    incarnation: str
    staleness: int = 0
    version: int | None = None  # the learner's version after it (None: refused)


@dataclass(frozen=True)
class SaveReply:
    """The MetaLearner's answer to a checkpoint request; `saved` is False (nothing written)
    when the caller counted on an earlier incarnation."""

    incarnation: str
    saved: bool
    versions: dict[str, int] = field(default_factory=dict)
    streams: dict[str, Any] = field(default_factory=dict)


class UpdateLost(RuntimeError):
    """A finished task's update was lost (with its node) before the MetaLearner read it."""


class MetaLearnerRestarted(RuntimeError):
    """The MetaLearner restarted from its last checkpoint (or lost an update): the driver
    and it both go back to the newest complete checkpoint."""

    def __init__(self, why: str = "the MetaLearner restarted from its last checkpoint") -> None:
        super().__init__(why)
