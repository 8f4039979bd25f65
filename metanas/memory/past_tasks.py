"""The stored tasks a search learns from, and the memory's model of them.

`memory_model` is the one way every policy (`metanas.memory.policies`), `MemorySampler`,
`metanas.propose` and the benchmarks read the memory: the newest records of the search's
space (or of a space that holds its parameters), or, given the task's embedding, its
nearest (FAISS); and the cross-task model of them, its surrogate kept in the memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from metanas.memory.memory_model import MODEL_TASKS, MemoryModel
from metanas.memory.records import PastTask
from metanas.searchers.space import SearchSpace

if TYPE_CHECKING:  # (the store's module loads FAISS and Arrow: only its type is needed here)
    from metanas.memory.store import TaskMemory

MAX_PAST_TASKS = 500  # the most recent same-space records a black-box warm start weighs


def holds(stored: SearchSpace, space: SearchSpace) -> bool:
    """Whether a stored space has every parameter of `space`, defined the same way."""
    return all(p.name in stored.names and stored[p.name] == p for p in space.params)


def matching_signatures(
    store: TaskMemory, space: SearchSpace, family: str | None = None, exclude_task: str | None = None
) -> list[str]:
    """The signatures of the stored spaces whose records a search of `space` learns from:
    its own, and every space that holds its parameters (their trials seen through `space`)."""
    out = [space.signature]
    for signature, spec, _ in store.spaces(family, exclude_task):
        if signature != space.signature and spec is not None and holds(SearchSpace.from_spec(spec), space):
            out.append(signature)
    return out


def projected(trials: Sequence[dict[str, Any]], space: SearchSpace) -> list[dict[str, Any]]:
    """Stored trials as configs of `space` (the parameters it has; a trial without one of
    them is left out)."""
    names = space.names
    return [
        {**t, "config": {n: t["config"][n] for n in names}}
        for t in trials
        if all(n in t["config"] for n in names)
    ]


def past_tasks(
    store: TaskMemory,
    space: SearchSpace,
    family: str | None,
    exclude_task: str,
    with_embeddings: bool = False,
) -> list[PastTask]:
    """The newest `MAX_PAST_TASKS` records of `space`, or of a space that holds its
    parameters (and of `family`, if given), in `store`, other than `exclude_task`'s own.
    `with_embeddings`: each with its embedding, when it is of the embedder most of them
    share (embeddings of two embedders do not compare)."""
    signatures = matching_signatures(store, space, family, exclude_task)
    records = store.records(
        space_signature=signatures, family=family, exclude_task=exclude_task, newest=MAX_PAST_TASKS
    )
    trials = [
        r.trials if r.space_signature == space.signature else projected(r.trials, space) for r in records
    ]
    if not with_embeddings or not records:
        return [PastTask(r.task_id, t) for r, t in zip(records, trials)]
    common = Counter(r.embedder for r in records).most_common(1)[0][0]
    return [
        PastTask(r.task_id, t, embedding=r.embedding if r.embedder == common else None, embedder=common)
        for r, t in zip(records, trials)
    ]


def memory_model(
    store: TaskMemory | None,
    space: SearchSpace,
    family: str | None,
    task_id: str,
    seed: int,
    embedding: tuple[str, np.ndarray] | None,
    neighbours: int = MODEL_TASKS,
) -> tuple[list[PastTask], MemoryModel | None]:
    """The stored tasks a search learns from and the memory's model of them (its surrogate
    kept in the memory), or ([], None) without a memory. With the new task's `embedding`,
    they are its `neighbours` nearest stored tasks (FAISS), weighted by similarity until
    the task's own results weigh them."""
    if store is None:
        return [], None
    if embedding is not None:
        n = neighbours
        hits = store.nearest(embedding[1], n + 1, space.signature, embedding[0], family=family)
        past = [
            PastTask(r.task_id, r.trials, sim, r.embedding, r.embedder)
            for r, sim in hits
            if r.task_id != task_id
        ][:n]
        stored = store.records(space_signature=space.signature, family=family, newest=1) if not hits else []
        if stored and stored[0].embedder != embedding[0]:
            raise ValueError(
                f"embedding: the memory's records of this space use {stored[0].embedder!r}, not "
                f"{embedding[0]!r}"
            )
    else:
        past = past_tasks(store, space, family, task_id, with_embeddings=True)
    stored_embedder = past[0].embedder if past else ""
    vector = embedding[1] if embedding is not None else None
    # (the black-box `memory` policy weighs all of `past`; its model, the newest MODEL_TASKS.
    # The surrogate also trains on the newest records: `past` already, or read when it trains.)
    recent = (
        (lambda: past)
        if embedding is None
        else (lambda: past_tasks(store, space, family, task_id, with_embeddings=True))
    )
    return past, MemoryModel(
        space,
        past[-MODEL_TASKS:],
        seed,
        directory=store.path,
        embedder=stored_embedder,
        embedding=vector,
        more=recent,
    )
