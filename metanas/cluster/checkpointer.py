"""Checkpoints of meta-training: the MetaLearner's tensors first, then the memory records of
the tasks since the last checkpoint, then the JSON state file (written last: its presence
marks a complete checkpoint, so a crash mid-way leaves the previous one in force)."""

from __future__ import annotations

import dataclasses
import time
from typing import Protocol

from metanas._util.atomic import atomic_write_json, save_tensors
from metanas.cluster.messages import MetaLearnerRestarted, SaveReply
from metanas.cluster.run_dir import RunDir
from metanas.cluster.train_state import Counters, TrainState, WorkerTally


def write_initial_checkpoint(run_dir: RunDir, params: dict[str, dict]) -> TrainState:
    """Iteration 0 is a checkpoint like any other: the MetaLearner starts from it."""
    tensors, state_path = run_dir.checkpoint_paths(0)
    save_tensors(tensors, {f"{name}/{k}": v for name, p in params.items() for k, v in p.items()})
    state = TrainState()
    atomic_write_json(state_path, state.to_json())
    return state


class Saver(Protocol):
    def save(self, path: str, incarnation: str) -> SaveReply: ...


class Appender(Protocol):
    def append(self, records: list) -> None: ...


class Checkpointer:
    """Writes and reads back meta-training's checkpoints."""

    def __init__(self, run_dir: RunDir, learner: Saver, memory: Appender, wall_before: float) -> None:
        self.run_dir = run_dir
        self.learner = learner
        self.memory = memory
        self.wall_before = wall_before  # earlier sessions' time (a resumed campaign)
        self.session_start = time.time()

    def latest(self) -> TrainState:
        checkpoint = self.run_dir.latest_checkpoint()
        if checkpoint is None:
            raise RuntimeError(f"{self.run_dir.root}: no checkpoint to go back to")
        return TrainState.from_json(checkpoint.state)

    def save(
        self, state: TrainState, counts: Counters, tally: WorkerTally, incarnation: str, records: list
    ) -> TrainState:
        tensors, state_path = self.run_dir.checkpoint_paths(state.iteration)
        reply = self.learner.save(str(tensors), incarnation)
        if not reply.saved:
            raise MetaLearnerRestarted()  # it holds what it reloaded, not what we counted
        # After a crash the tasks since this checkpoint re-run and re-append under the same
        # keys, which the store ignores.
        self.memory.append(records)
        new = dataclasses.replace(
            state,
            counts=counts.copy(),  # a copy: the scheduler goes on counting
            workers=tally.merge(state.workers),
            wall_s=self.wall_before + (time.time() - self.session_start),
            meta_learner={"versions": reply.versions, "streams": reply.streams},
        )
        atomic_write_json(state_path, new.to_json())
        return new
