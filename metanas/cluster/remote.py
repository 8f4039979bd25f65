"""Driver-side handles of the central actors, in the terms the (Ray-free) scheduler uses:
every call waits with a bound, and an update lost with its node (or with the aggregator
holding it) becomes `UpdateLost`.

With node aggregation (`meta_train.aggregation: node`) each node's updates go through that
node's `NodeAggregator`: sync, it sums them into one array per learner; async, it stacks
the updates that arrive together into one `submit_stack` call. An aggregator holds
nothing that is not still a task's: when it dies (Ray restarts it) or its node is gone,
the tasks whose updates it held run again (sync: the iteration rewinds)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import ray
from ray.exceptions import ActorUnschedulableError, ObjectLostError, RayActorError

from metanas.cluster.messages import NodeUpdate, SaveReply, SubmitReply, UpdateLost
from metanas.cluster.wire import ParameterCache
from metanas.cluster.worker_pool import WAIT_TIMEOUT_S


def _get(ref: Any) -> Any:
    return ray.get(ref, timeout=WAIT_TIMEOUT_S)


class RemoteMetaLearner:
    def __init__(self, actor: Any, learners: tuple[str, ...], name: str = "") -> None:
        """`name`: the actor's, by which aggregators find it."""
        self.actor = actor
        self.name = name
        self.learners = learners
        # node id -> that node's `NodeAggregator` (`aggregation: node`; none: every update
        # goes straight to the MetaLearner)
        self.aggregators: dict[str, Any] = {}
        self.cache = ParameterCache()
        self.sent: dict[Any, str] = {}  # async ticket -> its learner

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

    def apply(self, iteration: int, updates: dict[str, list[NodeUpdate]]) -> list[int]:
        """One sync step per learner; each learner's version after it."""
        calls = []
        for name in self.learners:
            by_node: dict[str, list] = defaultdict(list)
            for u in updates.get(name, []):
                by_node[u.node if u.node in self.aggregators else ""].append(u.update)
            direct = by_node.pop("", [])
            sums = [self.aggregators[node].sum.remote(*refs) for node, refs in by_node.items()]
            counts = [len(refs) for refs in by_node.values()] + [1] * len(direct)
            calls.append(self.actor.apply.remote(name, iteration, counts, *sums, *direct))
        try:
            return _get(calls)
        except (ObjectLostError, RayActorError, ActorUnschedulableError) as err:
            raise UpdateLost(f"an update of iteration {iteration} was lost on its way") from err

    def send(self, learner: str, key: int, base_version: int, update: NodeUpdate, incarnation: str) -> Any:
        """Hand an async update on (through its node's aggregator, if any); a ticket for `replies`."""
        aggregator = self.aggregators.get(update.node)
        target = aggregator.add if aggregator is not None else self.actor.submit
        ticket = target.remote(learner, key, base_version, update.update, incarnation)
        self.sent[ticket] = learner
        return ticket

    def replies(self, tickets: list, wait: bool) -> list[tuple[Any, SubmitReply | UpdateLost]]:
        ready, _ = ray.wait(tickets, num_returns=len(tickets), timeout=WAIT_TIMEOUT_S if wait else 0)
        if wait and len(ready) < len(tickets):
            raise TimeoutError(f"the MetaLearner did not answer {len(tickets) - len(ready)} updates")
        return [(ticket, self._reply(ticket)) for ticket in ready]

    def _reply(self, ticket: Any) -> SubmitReply | UpdateLost:
        learner = self.sent.pop(ticket)
        try:
            reply = ray.get(ticket)
        except ObjectLostError as err:
            return UpdateLost(f"an update was lost with its node: {err}")
        except RayActorError as err:  # (only an aggregator: the MetaLearner's calls are retried)
            return UpdateLost(f"an update was lost with the aggregator holding it: {err}")
        except ActorUnschedulableError as err:  # the aggregator's node is gone, with its workers
            return UpdateLost(f"an update went to the aggregator of a node that is gone: {err}")
        if reply.version is None:  # (refused: another incarnation holds other parameters)
            self.cache.clear()
        else:
            self.cache.saw(learner, reply.incarnation, reply.version)
        return reply

    def load(self) -> dict[str, float]:
        """Calls and updates the MetaLearner received, and its CPU seconds (`MetaLearner.load`)."""
        return _get(self.actor.load.remote())

    def flush(self) -> None:
        self.cache.clear()
        _get(self.actor.flush.remote())

    def save(self, path: str, incarnation: str) -> SaveReply:
        return _get(self.actor.save.remote(path, incarnation))

    def reload(self) -> str:
        self.cache.clear()
        self.sent.clear()  # (replies to the incarnation before are of no use)
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
