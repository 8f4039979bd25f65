"""The MetaLearner's logic, free of Ray: versioned meta-parameters per learner, Reptile
steps, checkpoints. The `MetaLearner` actor wraps this class; tests drive it in-process.

Two modes:
- sync: `apply(learner, iteration, updates)` takes a whole iteration's updates at once; an
  iteration already applied is ignored, so a retried call never applies a step twice.
- async: `submit(learner, key, base_version, update, incarnation)` takes one task's update
  as it arrives (`AsyncReptile`: staleness-weighted, at most once per task key).

It always starts from the newest complete checkpoint of its run directory (buffered async
updates included), under a fresh `incarnation`; a call meant for another incarnation is
refused, so a restarted MetaLearner holds exactly its checkpoint until the driver has
rewound to it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import torch

from metanas._util.atomic import save_tensors
from metanas.cluster.messages import SaveReply, SubmitReply
from metanas.cluster.run_dir import RunDir
from metanas.searchers.darts.reptile import (
    AsyncReptile,
    KeySet,
    MetaSchedule,
    Params,
    StalenessBound,
    UpdateOutcome,
    reptile_step,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AsyncSettings:
    meta_batch: int
    max_staleness: int
    stale_policy: str


class MetaLearnerCore:
    def __init__(
        self,
        schedule: MetaSchedule,
        run_dir: str,
        async_settings: AsyncSettings | None = None,
        learners: tuple[str, ...] = ("metanas", "reptile_fixed"),
    ) -> None:
        self.schedule = schedule
        self.learners = tuple(learners)
        self.run_dir = RunDir(run_dir)
        self.async_settings = async_settings
        self.reload()

    def reload(self) -> str:
        """Go back to the newest complete checkpoint under a new incarnation (also what a
        restarted actor does when it is constructed again)."""
        checkpoint = self.run_dir.latest_checkpoint()
        if checkpoint is None:
            raise RuntimeError(f"{self.run_dir.root}: no checkpoint to start the MetaLearner from")
        self.incarnation = uuid.uuid4().hex
        # (own copies: async steps update them in place)
        self.params: dict[str, Params] = {
            name: {k: v.clone() for k, v in checkpoint.params(name).items()} for name in self.learners
        }
        self.version = {name: checkpoint.iteration for name in self.learners}
        self.streams: dict[str, AsyncReptile] = {}
        if self.async_settings is not None:
            s = self.async_settings
            saved = checkpoint.state.get("meta_learner", {}).get("streams", {})
            for name in self.learners:
                mine = saved.get(name, {})
                self.streams[name] = AsyncReptile(
                    self.params[name],  # shared: the stream updates it in place
                    self.schedule,
                    s.meta_batch,
                    StalenessBound(s.max_staleness, s.stale_policy),
                    version=int(mine.get("version", 0)),
                    seen=KeySet.from_json(mine.get("seen")),
                    buffer=checkpoint.params(f"{name}@buffer") or None,
                    buffered=int(mine.get("buffered", 0)),
                )
        return self.incarnation

    def current_version(self, learner: str) -> int:
        return self.streams[learner].version if self.streams else self.version[learner]

    def apply(self, learner: str, iteration: int, deltas: list[Params]) -> int:
        """One sync Reptile step for `iteration`; returns the learner's version after it."""
        if iteration != self.version[learner]:  # applied before (a retried call), or a stale driver
            log.warning(
                "ignoring update for %s iteration %d (at version %d)",
                learner,
                iteration,
                self.version[learner],
            )
            return self.version[learner]
        beta_w, beta_alpha = self.schedule.betas(iteration)
        self.params[learner] = reptile_step(self.params[learner], deltas, beta_w, beta_alpha)
        self.version[learner] = iteration + 1
        return self.version[learner]

    def submit(
        self, learner: str, key: int, base_version: int, delta: Params | torch.Tensor, incarnation: str
    ) -> SubmitReply:
        """One task's update (named tensors, or one flat tensor in the order of the
        learner's parameters); the reply says the learner's version after it."""
        if incarnation != self.incarnation:
            return SubmitReply(UpdateOutcome.REFUSED, self.incarnation)
        stream = self.streams[learner]
        outcome, staleness = stream.submit(key, base_version, delta)
        return SubmitReply(outcome, self.incarnation, staleness, stream.version)

    def submit_stack(
        self, learner: str, keys: list[int], base_versions: list[int], stack: torch.Tensor, incarnation: str
    ) -> list[SubmitReply]:
        """Several tasks' updates in one call (row i of `stack`, flat, is task `keys[i]`'s):
        what submitting them one by one gives, in one step per run of rows."""
        if incarnation != self.incarnation:
            return [SubmitReply(UpdateOutcome.REFUSED, self.incarnation)] * len(keys)
        stream = self.streams[learner]
        outcomes = stream.submit_stack(keys, base_versions, stack)
        return [
            SubmitReply(outcome, self.incarnation, staleness, stream.version)
            for outcome, staleness in outcomes
        ]

    def layout(self, learner: str) -> tuple[str, ...]:
        """The order of the learner's parameters: an update packed in it is added flat."""
        return tuple(self.params[learner])

    def flush(self) -> dict[str, int]:
        """End of meta-training: partially filled async buffers become a last meta-step."""
        for stream in self.streams.values():
            stream.flush()
        return {name: self.current_version(name) for name in self.params}

    def save(self, path: str, incarnation: str) -> SaveReply:
        """Write every learner's parameters (and async buffers) to one safetensors file
        ('learner/param', 'learner@buffer/param'). Refused (nothing written) when the
        caller still counts on an earlier incarnation."""
        if incarnation != self.incarnation:
            return SaveReply(self.incarnation, saved=False)
        tensors: dict[str, Any] = {f"{name}/{k}": v for name, p in self.params.items() for k, v in p.items()}
        for name, stream in self.streams.items():
            tensors |= {f"{name}@buffer/{k}": v for k, v in stream.buffer.items()}
        save_tensors(path, tensors)
        return SaveReply(
            self.incarnation,
            saved=True,
            versions={name: self.current_version(name) for name in self.params},
            streams={name: stream.state() for name, stream in self.streams.items()},
        )
