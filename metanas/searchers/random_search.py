"""Random search: warm-start configs first (they are good guesses), then uniform samples."""

from __future__ import annotations

import random

from metanas.platform.space import SearchSpace
from metanas.searchers.base import Objective, Searcher, Trial, WarmStart


class RandomSearcher(Searcher):
    name = "random"

    def _search(self, objective: Objective, space: SearchSpace, budget: int, warm_start: list[WarmStart]) -> list[Trial]:
        rng = random.Random(self.seed)
        trials = [Trial(ws.config, ws.score, None, "known") for ws in warm_start if ws.score is not None]
        queue = [ws.config for ws in warm_start if ws.score is None]
        while len([t for t in trials if t.source != "known"]) < budget:
            source = "warm_start" if queue else "search"
            config = queue.pop(0) if queue else space.sample(rng)
            trials.append(Trial(config, objective(config), None, source))
        return trials
