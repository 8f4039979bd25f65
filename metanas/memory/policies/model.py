"""`model` (the default): the memory's model proposes each early evaluation through
`MemorySampler` (`metanas.memory.memory_model`), re-weighting the stored tasks as results
arrive, then TPE refines. Nothing is planned up front: the sampler chooses every trial."""

from __future__ import annotations

from typing import Any

from metanas.memory.policies.base import Start, WarmStartPolicy


class ModelWarmStart(WarmStartPolicy):
    name = "model"
    needs_sampler = True

    def sampler(self, start: Start) -> Any:
        # (the sampler reads policies too: imported when used)
        from metanas.memory.sampler import (
            MemorySampler,
            tuned_tpe,
        )

        return MemorySampler(start.space, seed=start.seed, model=start.model, fallback=tuned_tpe(start.seed))
