"""Driver-side handles of the central actors, in the terms the (Ray-free) scheduler uses:
every call waits with a bound, and an update lost with its node becomes `UpdateLost`."""

from __future__ import annotations

from typing import Any

import ray
from ray.exceptions import ObjectLostError

from metanas.cluster.messages import SaveReply, SubmitReply, UpdateLost
from metanas.cluster.worker_pool import WAIT_TIMEOUT_S


def _get(ref: Any) -> Any:
    return ray.get(ref, timeout=WAIT_TIMEOUT_S)


class RemoteMetaLearner:
    def __init__(self, actor: Any, learners: tuple[str, ...]) -> None:
        self.actor = actor
        self.learners = learners

    def params(self, learner: str) -> Any:
        """A reference to the learner's current parameters (never fetched by the driver)."""
        return self.actor.get.remote(learner)

    def snapshot(self, learner: str) -> tuple[Any, Any]:
        """References to (version, parameters), read when the task is handed out."""
        return self.actor.snapshot.remote(learner)

    def arch(self, learner: str) -> dict:
        return _get(self.actor.arch.remote(learner))

    def apply(self, iteration: int, updates: dict[str, list]) -> list[int]:
        """One sync step per learner; each learner's version after it."""
        try:
            return _get(
                [self.actor.apply.remote(name, iteration, *updates.get(name, [])) for name in self.learners]
            )
        except ObjectLostError as err:
            raise UpdateLost(f"an update of iteration {iteration} was lost with its node") from err

    def submit(self, learner: str, key: int, base_version: int, update: Any, incarnation: str) -> SubmitReply:
        try:
            return _get(self.actor.submit.remote(learner, key, base_version, update, incarnation))
        except ObjectLostError as err:
            raise UpdateLost(f"the update of task {key} was lost with its node") from err

    def flush(self) -> None:
        _get(self.actor.flush.remote())

    def save(self, path: str, incarnation: str) -> SaveReply:
        return _get(self.actor.save.remote(path, incarnation))

    def reload(self) -> str:
        return _get(self.actor.reload.remote())

    def incarnation(self) -> str:
        return _get(self.actor.get_incarnation.remote())


class RemoteMemory:
    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def append(self, records: list) -> None:
        _get(self.actor.append.remote(records))

    def count(self) -> int:
        return _get(self.actor.count.remote())
