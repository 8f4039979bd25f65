"""Random search: warm-start configs first (they are good guesses), then uniform samples.
With `fidelities`, a budget-taking objective is evaluated once, at the highest fidelity
(random search has no early stopping to make the lower ones worth their cost)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from metanas.searchers.base import Objective, Searcher, Trial, WarmStart
from metanas.searchers.space import SearchSpace


class RandomSearcher(Searcher):
    name = "random"

    def __init__(self, seed: int = 0, fidelities: Sequence[float] | None = None) -> None:
        super().__init__(seed)
        self.fidelity = max(fidelities) if fidelities else None

    def _search(
        self, objective: Objective, space: SearchSpace, budget: int, warm_start: list[WarmStart]
    ) -> list[Trial]:
        rng = random.Random(self.seed)
        trials = [Trial(ws.config, ws.score, None, "known") for ws in warm_start if ws.score is not None]
        queue = [ws.config for ws in warm_start if ws.score is None]
        fidelity = self.fidelity if objective.takes_budget else None
        while len([t for t in trials if t.source != "known"]) < budget:
            source = "warm_start" if queue else "search"
            config = queue.pop(0) if queue else space.sample(rng)
            trials.append(Trial(config, objective(config, fidelity), fidelity, source))
        return trials
