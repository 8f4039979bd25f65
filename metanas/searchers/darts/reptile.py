"""Reptile meta-update over the supernet's weights `w` and architecture parameters `alpha`.

theta <- theta + beta * mean_i(theta_i - theta), with separate step sizes for `w` and
`alpha`, both decayed linearly over the campaign, and `alpha` frozen during its warm-up
(as in MetaNAS, the weights of all ops learn first so no op wins just by training faster).
Pure torch, no Ray: the MetaLearner actor wraps these classes.

The schedule also anneals the supernet's softmax temperature (MetaNAS: 1.0 -> 0.05), so
the mixed edges sharpen towards the discrete architecture as meta-training goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import torch

Params = dict[str, torch.Tensor]

# the names of Supernet.arch_parameters(): op weights (normal, reduction), then edge
# normalisation's edge weights (normal, reduction)
ARCH_PARAMS = ("alpha", "alpha_reduce", "beta", "beta_reduce")


def is_arch_param(name: str) -> bool:
    """Architecture parameters take the `beta_alpha` step size, everything else `beta_w`."""
    return name in ARCH_PARAMS


@dataclass(frozen=True)
class MetaSchedule:
    iterations: int
    beta_w: float
    beta_alpha: float
    beta_final_fraction: float = 0.0
    alpha_warmup: int = 0
    temperature_start: float = 1.0
    temperature_end: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature_start <= 0 or self.temperature_end <= 0:
            raise ValueError(
                f"temperatures must be > 0, got {self.temperature_start} -> {self.temperature_end}"
            )

    def betas(self, iteration: int) -> tuple[float, float]:
        frac = min(iteration / max(self.iterations, 1), 1.0)
        scale = 1.0 - frac * (1.0 - self.beta_final_fraction)
        beta_alpha = 0.0 if iteration < self.alpha_warmup else self.beta_alpha * scale
        return self.beta_w * scale, beta_alpha

    def alpha_active(self, iteration: int) -> bool:
        return iteration >= self.alpha_warmup

    def temperature(self, iteration: int) -> float:
        """Geometric from `temperature_start` at iteration 0 to `temperature_end` at the
        last iteration (iterations - 1), constant after."""
        frac = min(max(iteration, 0) / max(self.iterations - 1, 1), 1.0)
        if frac == 1.0:  # exactly the end value, not a rounding of it
            return self.temperature_end
        return self.temperature_start * (self.temperature_end / self.temperature_start) ** frac


def reptile_step(theta: Params, deltas: Sequence[Params], beta_w: float, beta_alpha: float) -> Params:
    """Return the new meta-parameters; `theta` is not modified."""
    if not deltas:
        return {k: v.clone() for k, v in theta.items()}
    out = {}
    for name, value in theta.items():
        mean = torch.stack([d[name].to(value.dtype) for d in deltas]).mean(0)
        beta = beta_alpha if is_arch_param(name) else beta_w
        out[name] = value + beta * mean
    return out


# -- asynchronous meta-updates ---------------------------------------------------------------


class KeySet:
    """A set of non-negative task keys kept as a low-water mark plus the few keys above it.
    Tasks finish nearly in the order they were handed out, so a campaign of millions of
    tasks stays a handful of numbers (and a small JSON object in a checkpoint)."""

    def __init__(self, below: int = 0, above: Sequence[int] = ()) -> None:
        self.below = below  # every key < below is in the set
        self.above = set(above)
        self._compact()

    def _compact(self) -> None:
        while self.below in self.above:
            self.above.remove(self.below)
            self.below += 1

    def __contains__(self, key: int) -> bool:
        return key < self.below or key in self.above

    def __len__(self) -> int:
        return self.below + len(self.above)

    def add(self, key: int) -> bool:
        """Add `key`; False if it was already there."""
        if key in self:
            return False
        self.above.add(key)
        self._compact()
        return True

    def missing(self, stop: int) -> list[int]:
        """The keys in [0, stop) not in the set, in order."""
        return [k for k in range(self.below, stop) if k not in self.above]

    def to_json(self) -> dict:
        return {"below": self.below, "above": sorted(self.above)}

    @classmethod
    def from_json(cls, data: dict | None) -> KeySet:
        data = data or {}
        return cls(int(data.get("below", 0)), [int(k) for k in data.get("above", [])])


@dataclass(frozen=True)
class StalenessBound:
    """How an update computed from meta-parameters `staleness` versions old is treated:
    within `max_staleness` it counts fully; beyond it is dropped or down-weighted by
    (max_staleness + 1) / (staleness + 1)."""

    max_staleness: int
    policy: str = "downweight"  # or "drop"

    def weight(self, staleness: int) -> float:
        if staleness <= self.max_staleness:
            return 1.0
        if self.policy == "drop":
            return 0.0
        return (self.max_staleness + 1) / (staleness + 1)


class UpdateOutcome(str, Enum):
    """What became of one async update (a str, so it reads and serialises as its value)."""

    APPLIED = "applied"
    DOWNWEIGHTED = "downweighted"  # older than max_staleness, counted with a smaller weight
    DROPPED = "dropped"  # older than max_staleness with stale_policy: drop
    DUPLICATE = "duplicate"  # its task key was applied before (a retried task)
    REFUSED = "refused"  # sent to an earlier incarnation of a restarted MetaLearner

    @property
    def counts(self) -> bool:
        return self in (UpdateOutcome.APPLIED, UpdateOutcome.DOWNWEIGHTED)


class AsyncReptile:
    """Reptile with updates applied as they arrive, so a slow worker never stalls the rest.

    Each update enters a buffer with its staleness weight; every `meta_batch` updates the
    buffer's weighted mean becomes one meta-step and the version advances (a buffered
    asynchronous step: with no staleness it equals the synchronous Reptile step over the
    same tasks). Task keys are remembered, so an update is applied at most once per key.
    """

    def __init__(
        self,
        theta: Params,
        schedule: MetaSchedule,
        meta_batch: int,
        bound: StalenessBound,
        version: int = 0,
        seen: KeySet | None = None,
        buffer: Params | None = None,
        buffered: int = 0,
    ) -> None:
        self.theta = theta
        self.schedule = schedule
        self.meta_batch = meta_batch
        self.bound = bound
        self.version = version
        self.seen = seen or KeySet()
        # The running sum: one flat tensor, a view of it per name, so an update laid out
        # flat in theta's order (`submit` with a tensor) is added in one step.
        self.names = tuple(theta)
        self.flat_buffer = torch.cat(
            [(buffer[k] if buffer is not None else torch.zeros_like(v)).reshape(-1) for k, v in theta.items()]
        )
        self.buffer: Params = {}
        start = 0
        for k, v in theta.items():
            self.buffer[k] = self.flat_buffer[start : start + v.numel()].view(v.shape)
            start += v.numel()
        self.buffered = buffered

    def submit(self, key: int, base_version: int, delta: Params | torch.Tensor) -> tuple[UpdateOutcome, int]:
        """Take the update of task `key`, computed from version `base_version`: named
        tensors, or one flat tensor in the order of `names`; return (outcome, staleness).
        The update is only read (it may lie in read-only shared memory)."""
        outcome, staleness, weight = self._admit(key, base_version)
        if weight == 0.0:
            return outcome, staleness
        if isinstance(delta, torch.Tensor):
            self.flat_buffer.add_(delta.to(self.flat_buffer.dtype), alpha=weight)
        else:
            for name, value in delta.items():
                self.buffer[name].add_(value.to(self.buffer[name].dtype), alpha=weight)
        self.buffered += 1
        if self.buffered >= self.meta_batch:
            self.flush()
        return outcome, staleness

    def submit_stack(
        self, keys: Sequence[int], base_versions: Sequence[int], stack: torch.Tensor
    ) -> list[tuple[UpdateOutcome, int]]:
        """Several tasks' updates at once, row i of `stack` (flat, in the order of `names`)
        being task `keys[i]`'s: the same outcomes, staleness weights and steps as submitting
        them one by one in that order, each run of rows up to a step added in one product."""
        outcomes, weights, first = [], [], 0
        for i, (key, base) in enumerate(zip(keys, base_versions)):
            outcome, staleness, weight = self._admit(key, base)
            outcomes.append((outcome, staleness))
            weights.append(weight)
            if weight > 0.0:
                self.buffered += 1
            if self.buffered >= self.meta_batch:  # a step here: add the rows so far, then step
                self._add_rows(stack[first : i + 1], weights[first : i + 1])
                first = i + 1
                self.flush()
        self._add_rows(stack[first:], weights[first:])
        return outcomes

    def _admit(self, key: int, base_version: int) -> tuple[UpdateOutcome, int, float]:
        """An update's outcome, staleness and weight, its key remembered (no sum yet)."""
        if not self.seen.add(key):
            return UpdateOutcome.DUPLICATE, 0, 0.0
        staleness = max(0, self.version - base_version)
        weight = self.bound.weight(staleness)
        if weight == 0.0:
            return UpdateOutcome.DROPPED, staleness, 0.0
        return (UpdateOutcome.APPLIED if weight == 1.0 else UpdateOutcome.DOWNWEIGHTED), staleness, weight

    def _add_rows(self, rows: torch.Tensor, weights: list[float]) -> None:
        if any(weights):  # buffer += rows^T w, in place
            w = torch.as_tensor(weights, dtype=self.flat_buffer.dtype)
            self.flat_buffer.addmv_(rows.to(self.flat_buffer.dtype).t(), w)

    def flush(self) -> None:
        """Turn whatever is buffered into a meta-step (the campaign's last one may be partial)."""
        if self.buffered == 0:
            return
        beta_w, beta_alpha = self.schedule.betas(self.version)
        for name, value in self.theta.items():
            beta = beta_alpha if is_arch_param(name) else beta_w
            value.add_(
                self.buffer[name].to(value.dtype), alpha=beta / self.buffered
            )  # (in place: theta is shared)
        self.flat_buffer.zero_()
        self.buffered = 0
        self.version += 1

    def state(self) -> dict:
        """What a checkpoint needs besides `theta` and `buffer` (both tensors)."""
        return {"version": self.version, "seen": self.seen.to_json(), "buffered": self.buffered}
