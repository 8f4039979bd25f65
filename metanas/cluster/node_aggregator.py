"""One aggregator per node (`meta_train.aggregation: node`): a node's updates reach the
MetaLearner in fewer, larger calls, so its load falls by about the workers per node.

- sync: `sum(*updates)` adds the node's updates of an iteration into one array; the
  MetaLearner averages the nodes' sums weighted by their task counts (`mean_update`).
- async: `add(...)` holds an update until `batch` of the same learner are in, or `linger_s`
  after the first of them, then forwards them stacked (`stack_updates`) in one
  `submit_stack` call, which applies each as a call of its own would (its key at most once,
  its own staleness weight); each caller gets its own reply.

It holds nothing a crash could lose for good: an update it held is still its task's, and
the driver runs a task again whose reply never came (`UpdateLost`).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import ray

from metanas.cluster.messages import SubmitReply
from metanas.cluster.wire import Packed, stack_updates, sum_updates


@ray.remote(max_restarts=-1, max_task_retries=0)
class NodeAggregator:
    def __init__(self, meta_learner: str, batch: int, linger_s: float) -> None:
        """`meta_learner`: the MetaLearner actor's name (a handle as an argument would live
        in the object store, and a restart could not rely on it)."""
        self.meta_learner = ray.get_actor(meta_learner)
        self.batch, self.linger_s = max(1, batch), linger_s
        self.groups: dict[tuple[str, str], list] = {}  # (learner, incarnation) -> waiting updates
        self.forwarded: set[asyncio.Task] = set()  # (kept: the event loop holds tasks weakly)

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def pid(self) -> int:
        return os.getpid()

    def held(self) -> int:
        """Updates waiting for their node's others (tests kill it while it holds some)."""
        return sum(len(group) for group in self.groups.values())

    def sum(self, *updates: Packed) -> Packed:
        return sum_updates(list(updates))

    async def add(
        self, learner: str, key: int, base_version: int, update: Packed, incarnation: str
    ) -> SubmitReply:
        loop = asyncio.get_running_loop()
        reply = loop.create_future()
        group = self.groups.setdefault((learner, incarnation), [])
        group.append((key, base_version, update, reply))
        if len(group) >= self.batch:
            self._forward(learner, incarnation)
        elif len(group) == 1:
            loop.call_later(self.linger_s, self._forward_if_waiting, learner, incarnation, group)
        return await reply

    def _forward_if_waiting(self, learner: str, incarnation: str, group: list) -> None:
        if self.groups.get((learner, incarnation)) is group:
            self._forward(learner, incarnation)

    def _forward(self, learner: str, incarnation: str) -> None:
        group = self.groups.pop((learner, incarnation))
        keys, bases, updates, replies = (list(column) for column in zip(*group))
        ref = self.meta_learner.submit_stack.remote(learner, keys, bases, stack_updates(updates), incarnation)
        task = asyncio.ensure_future(self._answer(ref, replies))
        self.forwarded.add(task)
        task.add_done_callback(self.forwarded.discard)

    async def _answer(self, ref: Any, replies: list[asyncio.Future]) -> None:
        try:
            answers = await ref
        except Exception as err:  # the caller sees what went wrong
            for reply in replies:
                reply.set_exception(err)
            return
        for reply, answer in zip(replies, answers):
            reply.set_result(answer)
