"""Parameters and updates as they cross Ray: one float32 array and where each named tensor
lies in it (no Ray here). One array, not one per tensor, because the MetaLearner's cost per
update was per tensor: a supernet has about 40 of them, and a flat update is read in place
from the object store and added to the running sum in one step.

Copies on the way of an update (`metanas bench learner` probes them): the worker packs
its update (one copy, on the worker), Ray writes it into the object store (one copy);
the MetaLearner reads it in place and adds it into its running sum (no copy). Parameters
go out packed once per version, not once per task (`ParameterCache`)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# Ray puts a call's arguments up to this size inside the call (its max_direct_call_object_size
# default); larger ones travel through the object store.
INLINE_BYTES = 100 * 1024


@dataclass(frozen=True)
class Packed:
    """Named float tensors laid end to end in one float32 array."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    flat: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.flat.nbytes)

    def tensor(self) -> torch.Tensor:
        """The flat array as a tensor over the same memory (read only, when it lies in
        Ray's object store: nothing may write to it)."""
        return _over(self.flat)

    def views(self) -> dict[str, torch.Tensor]:
        """Each named tensor as a view of the flat array (no copy)."""
        flat, out, start = self.tensor(), {}, 0
        for name, shape in zip(self.names, self.shapes):
            size = int(np.prod(shape, dtype=np.int64))
            out[name] = flat[start : start + size].view(shape)
            start += size
        return out


def pack(params: Mapping[str, torch.Tensor]) -> Packed:
    """`params` (float tensors on any device) laid end to end, in their order."""
    names = tuple(params)
    flat = torch.cat([params[n].detach().reshape(-1).to("cpu", torch.float32) for n in names])
    return Packed(names, tuple(tuple(params[n].shape) for n in names), flat.numpy())


def difference(params: Mapping[str, torch.Tensor], base: Packed) -> Packed:
    """`params` - `base`, packed in `base`'s order: one subtraction over the flat arrays, not
    one per tensor (a task's update, from its adapted network's parameters)."""
    new = pack({n: params[n] for n in base.names})
    np.subtract(new.flat, base.flat, out=new.flat)  # (in place: `new` is ours)
    return new


def unpack(packed: Any) -> dict[str, torch.Tensor]:
    """Views of a `Packed`'s tensors; a dict of arrays (a checkpoint's, or an older
    caller's) as tensors over the same memory."""
    if isinstance(packed, Packed):
        return packed.views()
    return {k: _over(np.asarray(v)) for k, v in packed.items()}


def _over(array: np.ndarray) -> torch.Tensor:
    """A tensor over `array`'s memory, without a copy, even when it is read only."""
    with warnings.catch_warnings():  # (torch warns that a read-only array stays read-only)
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


class ParameterCache:
    """The driver's (or a producer's) references to a learner's newest parameters: asked
    for again only when a reply shows a newer version or another incarnation, so the
    MetaLearner writes its parameters into the object store once per version, not once
    per task."""

    def __init__(self) -> None:
        self.known: dict[str, tuple[str | None, int | None]] = {}  # learner -> (incarnation, version)
        self.refs: dict[str, tuple[Any, Any]] = {}  # learner -> (version ref, parameters ref)

    def get(self, learner: str) -> tuple[Any, Any] | None:
        return self.refs.get(learner)

    def put(self, learner: str, refs: tuple[Any, Any]) -> None:
        self.refs[learner] = refs

    def saw(self, learner: str, incarnation: str, version: int) -> None:
        """A reply from the MetaLearner: the learner is now at `version`."""
        if self.known.get(learner) != (incarnation, version):
            self.known[learner] = (incarnation, version)
            self.refs.pop(learner, None)

    def clear(self) -> None:
        self.known.clear()
        self.refs.clear()


def mean_update(updates: list[Any], counts: list[int] | None = None) -> dict[str, torch.Tensor]:
    """The mean of a sync iteration's updates; `counts[i]` is how many tasks' updates
    `updates[i]` sums (a node aggregator's sum; 1 each by default). Summed into one new
    array when they are all packed alike (no copy per update), name by name otherwise."""
    if not updates:
        return {}
    tasks = sum(counts) if counts else len(updates)
    if all(isinstance(u, Packed) and u.names == updates[0].names for u in updates):
        return sum_updates(updates, divide_by=tasks).views()
    views = [unpack(u) for u in updates]
    return {k: torch.stack([v[k] for v in views]).sum(0) / tasks for k in views[0]}


def sum_updates(updates: list[Packed], divide_by: int = 1) -> Packed:
    """Updates packed alike, added into one new array (divided by `divide_by`): what a
    node's aggregator forwards in sync mode, one array for all of its node's tasks."""
    first = updates[0]
    if any(u.names != first.names for u in updates):
        raise ValueError("updates of different layouts cannot be summed")
    total = first.tensor().clone()
    for u in updates[1:]:
        total.add_(u.tensor())
    if divide_by != 1:
        total.div_(divide_by)
    return Packed(first.names, first.shapes, total.numpy())


def stack_updates(updates: list[Packed]) -> Packed:
    """Updates packed alike, laid one after another in one array (row i: update i): what
    an aggregator forwards, so the MetaLearner takes several updates in one call."""
    first = updates[0]
    if any(u.names != first.names for u in updates):
        raise ValueError("updates of different layouts cannot be stacked")
    return Packed(first.names, first.shapes, np.concatenate([u.flat for u in updates]))
