"""What a stored task can say about configs it never evaluated: a nearest-neighbour
surrogate of its own trials (the memory never has a stored task's objective), and the rank
correlation used to compare what two tasks say."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from metanas.searchers.space import SearchSpace


def finite_trials(trials: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials with a usable score (failed evaluations carry -inf, or none at all)."""
    return [t for t in trials if t.get("score") is not None and math.isfinite(t["score"])]


def knn_predictor(
    space: SearchSpace, trials: Sequence[dict[str, Any]], k: int = 3
) -> Callable[[dict[str, Any]], float]:
    """A stored task's guess at a config's score: the mean of its `k` nearest encoded
    trials. Raises ValueError when the task has no finite trial to guess from."""
    finite = finite_trials(trials)
    if not finite:
        raise ValueError("a surrogate needs at least one trial with a finite score")
    X = np.asarray([space.encode(t["config"]) for t in finite])
    y = np.asarray([t["score"] for t in finite])

    def predict(config: dict[str, Any]) -> float:
        d = ((X - np.asarray(space.encode(config))) ** 2).sum(1)
        return float(y[np.argsort(d)[:k]].mean())

    return predict
