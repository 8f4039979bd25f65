"""The searcher interface every inner-loop search implements, and its records.

An objective is any Python callable `config -> float` or `(config, budget) -> float`
(higher is better). A warm start is a list of configs, optionally with scores already known
for this same task (those are told to the searcher, not evaluated again).
"""

from __future__ import annotations

import abc
import inspect
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from metanas.searchers.pareto import feasible, pareto_front
from metanas.searchers.space import SearchSpace, config_key

log = logging.getLogger(__name__)

# The score of a failed evaluation (an objective that returned NaN or inf), in every
# searcher: it is never the best, and a search where every evaluation failed has no best.
FAILED_SCORE = -math.inf


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a search: the evaluations that finished are attached (and, with a
    memory, stored under `key`)."""

    def __init__(self, trials: list[Trial], key: str | None = None) -> None:
        kept = f"; they are in the memory under {key!r}" if key else ""
        super().__init__(f"search interrupted after {len(trials)} finished evaluations{kept}")
        self.trials, self.key = trials, key


class SearchFailed(ValueError):
    """Every evaluation of a search failed: there is no best config. The trials (with their
    failure scores) are attached, so nothing evaluated is lost."""

    def __init__(self, message: str, trials: list[Trial]) -> None:
        super().__init__(message)
        self.trials = trials


@dataclass(frozen=True)
class Trial:
    config: dict[str, Any]
    score: float
    budget: float | None = None
    source: str = "search"  # "search", "warm_start", "known" (told, not evaluated) or "probe"
    # A multi-objective search's metrics (None when the evaluation failed); its `score` is
    # the first objective's value, negated when that objective is minimised.
    metrics: dict[str, float] | None = None
    # Why this config was evaluated (set by `metanas.search`: which warm start or model
    # proposed it, and the stored tasks it leaned on); `metanas explain` shows it.
    why: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"config": self.config, "score": self.score, "budget": self.budget, "source": self.source}
        if self.metrics is not None:
            out["metrics"] = self.metrics
        return out if self.why is None else {**out, "why": self.why}


@dataclass(frozen=True)
class WarmStart:
    config: dict[str, Any]
    score: float | None = None  # known for THIS task: told to the searcher, not re-evaluated
    weight: float = 1.0  # how strongly the memory recommends it (for ordering)


@dataclass
class SearchResult:
    searcher: str
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0
    warm_start_dropped: int = 0  # warm-start configs that did not fit the space
    # A multi-objective search's objectives (name -> 'max' or 'min') and bounds (name ->
    # the worst acceptable value); None for a single score.
    objectives: dict[str, str] | None = None
    constraints: dict[str, float] | None = None

    @property
    def pareto(self) -> list[Trial]:
        """The evaluated trials no other feasible trial dominates (feasible ones only)."""
        if self.objectives is None:
            raise ValueError("pareto: this was a single-objective search; pass objectives= to metanas.search")
        ok = [
            t
            for t in self.trials
            if t.metrics is not None and feasible(t.metrics, self.objectives, self.constraints)
        ]
        return [ok[i] for i in pareto_front([t.metrics for t in ok], self.objectives)]

    @property
    def failed(self) -> int:
        """Evaluations that failed (raised, or returned NaN or inf) or broke a bound."""
        return sum(not math.isfinite(t.score) for t in self.evaluated)

    @property
    def evaluated(self) -> list[Trial]:
        """Trials whose evaluation this search paid for (probes included)."""
        return [t for t in self.trials if t.source != "known"]

    @property
    def best(self) -> Trial:
        finite = [t for t in self.trials if math.isfinite(t.score)]
        if not finite:
            raise SearchFailed(
                f"every one of the {len(self.trials)} trials failed (the objective raised, returned NaN or "
                "inf, "
                "or broke a bound): no best config",
                list(self.trials),
            )
        return max(finite, key=lambda t: t.score)

    def best_so_far(self) -> list[float]:
        """Best score after each evaluated trial (known trials count as already there)."""
        best = max((t.score for t in self.trials if t.source == "known"), default=-math.inf)
        # probes come first in `trials`, so they are counted in the order they were paid for
        curve = []
        for t in self.evaluated:
            if math.isfinite(t.score):
                best = max(best, t.score)
            curve.append(best)
        return curve


class Objective:
    """Wraps a user callable: accepts `f(config)` or `f(config, budget)`, checks scores.

    An evaluation that raises is a failed trial (score -inf, the exception logged and kept
    in `errors`) and the search goes on, unless `fail_fast`. A result that is not a number
    is the objective's bug, not a failed trial: a TypeError naming the config. Every
    finished evaluation is kept in `history`, so an interrupted search loses none."""

    def __init__(self, fn: Callable[..., float], fail_fast: bool = False) -> None:
        if not callable(fn):
            raise TypeError(f"objective must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.fail_fast = fail_fast
        self.errors: list[tuple[dict[str, Any], str]] = []
        self.history: list[Trial] = []
        try:
            params = [
                p
                for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
            ]
            self.takes_budget = len(params) >= 2
        except (TypeError, ValueError):  # builtins without a signature
            self.takes_budget = False

    def __call__(self, config: dict[str, Any], budget: float | None = None) -> float:
        try:
            value = self.fn(config, budget) if self.takes_budget else self.fn(config)
        except Exception as err:  # (not KeyboardInterrupt: Ctrl-C stops the search)
            if self.fail_fast:
                raise
            log.warning(
                "objective raised %s: %s for %s; counted as a failed trial", type(err).__name__, err, config
            )
            self.errors.append((config, f"{type(err).__name__}: {err}"))
            self.history.append(Trial(config, FAILED_SCORE, budget))
            return FAILED_SCORE
        if (
            isinstance(value, (bool, str, bytes))
            or not isinstance(value, (int, float))
            and not hasattr(value, "__float__")
        ):
            raise TypeError(f"objective returned {value!r} for {config}; it must return a number")
        score = float(value)
        score = score if math.isfinite(score) else FAILED_SCORE
        self.history.append(Trial(config, score, budget))
        return score


def fit_warm_start(
    space: SearchSpace, warm_start: Sequence[WarmStart | dict], limit: int | None = None
) -> tuple[list[WarmStart], int]:
    """Validate warm-start configs against `space`; drop (and count) what does not fit,
    and duplicates; keep at most `limit`. Order is kept. The one place warm starts are
    checked: searchers call it on what they are given, the memory on what it proposes."""
    kept, dropped, seen = [], 0, set()
    for ws in warm_start:
        if limit is not None and len(kept) >= limit:
            break
        ws = ws if isinstance(ws, WarmStart) else WarmStart(dict(ws))
        try:
            config = space.validate(ws.config)
        except (ValueError, TypeError):
            dropped += 1
            continue
        key = config_key(config)
        if key in seen:
            continue
        seen.add(key)
        kept.append(WarmStart(config, ws.score, ws.weight))
    return kept, dropped


class Searcher(abc.ABC):
    """Called once per task search. `search` may evaluate the objective at most `budget`
    times (known warm-start scores are free) and returns every trial."""

    name: str = "searcher"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def search(
        self,
        objective: Callable[..., float] | Objective,
        space: SearchSpace,
        budget: int,
        warm_start: Sequence[WarmStart | dict] = (),
    ) -> SearchResult:
        if not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget must be a positive number of evaluations, got {budget!r}")
        obj = objective if isinstance(objective, Objective) else Objective(objective)
        fitted, dropped = fit_warm_start(space, warm_start)
        start = time.perf_counter()
        trials = self._search(obj, space, budget, fitted)
        return SearchResult(self.name, trials, time.perf_counter() - start, dropped)

    @abc.abstractmethod
    def _search(
        self, objective: Objective, space: SearchSpace, budget: int, warm_start: list[WarmStart]
    ) -> list[Trial]:
        """Run the search; warm starts are already validated."""
