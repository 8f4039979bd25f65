"""Driver-side handles of the central actors, in the terms the (Ray-free) scheduler uses:
every call waits with a bound, and an update lost with its node becomes `UpdateLost`."""

from __future__ import annotations

from typing import Any

import ray
from ray.exceptions import ObjectLostError

from metanas.cluster.messages import SaveReply, SubmitReply, UpdateLost
from metanas.cluster.wire import ParameterCache
from metanas.cluster.worker_pool import WAIT_TIMEOUT_S


def _get(ref: Any) -> Any:
    return ray.get(ref, timeout=WAIT_TIMEOUT_S)


class RemoteMetaLearner:
    def __init__(self, actor: Any, learners: tuple[str, ...]) -> None:
        self.actor = actor
        self.learners = learners
        self.cache = ParameterCache()

    def params(self, learner: str) -> Any:
        """A reference to the learner's current parameters (never fetched by the driver)."""
        return self.actor.get.remote(learner)

    def snapshot(self, learner: str) -> tuple[Any, Any]:
        """References to (version, parameters) for a task handed out now: the same objects
        until a reply shows the learner has stepped (one parameter object per version)."""
        refs = self.cache.get(learner)
        if refs is None:
            refs = self.actor.snapshot.remote(learner)
            self.cache.put(learner, refs)
        return refs

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
            reply = _get(self.actor.submit.remote(learner, key, base_version, update, incarnation))
        except ObjectLostError as err:
            raise UpdateLost(f"the update of task {key} was lost with its node") from err
        if reply.version is None:  # (refused: another incarnation holds other parameters)
            self.cache.clear()
        else:
            self.cache.saw(learner, reply.incarnation, reply.version)
        return reply

    def flush(self) -> None:
        self.cache.clear()
        _get(self.actor.flush.remote())

    def save(self, path: str, incarnation: str) -> SaveReply:
        return _get(self.actor.save.remote(path, incarnation))

    def reload(self) -> str:
        self.cache.clear()
        return _get(self.actor.reload.remote())

    def incarnation(self) -> str:
        self.cache.clear()
        return _get(self.actor.get_incarnation.remote())


class RemoteMemory:
    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def append(self, records: list) -> None:
        _get(self.actor.append.remote(records))

    def count(self) -> int:
        return _get(self.actor.count.remote())
