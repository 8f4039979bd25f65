"""Multi-objective search: the objective returns several metrics, each maximised or
minimised, some with a bound (the worst acceptable value); Optuna's multi-objective
samplers (TPE, NSGA-II) search, told the bounds as constraints (`Trial.set_constraint`); the result's `pareto`
holds the front of the feasible trials. `hypervolume` measures a front.

A trial's `score` is the first objective's value (negated when it is minimised), or -inf
when it failed or broke a bound, so `SearchResult.best` is the best feasible trial on the
first objective and every single-score tool (the memory's records, regret curves) still
reads it.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from metanas.searchers.base import FAILED_SCORE, SearchResult, Trial, WarmStart, fit_warm_start
from metanas.searchers.pareto import DIRECTIONS, feasible, violation
from metanas.searchers.space import SearchSpace

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "nsga2", "random")


def check_objectives(objectives: Mapping[str, str], constraints: Mapping[str, float] | None = None) -> None:
    if not isinstance(objectives, Mapping) or len(objectives) < 2:
        raise ValueError(f"objectives: expected at least two of name -> 'max' or 'min', got {objectives!r}")
    bad = {k: d for k, d in objectives.items() if d not in DIRECTIONS}
    if bad:
        raise ValueError(f"objectives: each direction must be 'max' or 'min', got {bad}")
    for name, bound in (constraints or {}).items():
        if name not in objectives:
            raise ValueError(f"constraints: {name!r} is not one of the objectives {list(objectives)}")
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
            raise ValueError(f"constraints: the bound of {name!r} must be a finite number, got {bound!r}")


class MultiObjective:
    """Wraps a user callable `config -> {metric: value}`; checks what it returns."""

    def __init__(
        self,
        fn: Callable[[dict[str, Any]], Mapping[str, float]],
        objectives: Mapping[str, str],
        constraints: Mapping[str, float] | None = None,
        fail_fast: bool = False,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"objective must be callable, got {type(fn).__name__}")
        check_objectives(objectives, constraints)
        self.fn = fn
        self.objectives = dict(objectives)
        self.constraints = dict(constraints or {})
        self.fail_fast = fail_fast
        self.errors: list[tuple[dict[str, Any], str]] = []

    def __call__(self, config: dict[str, Any]) -> dict[str, float] | None:
        """The metrics, or None when one is NaN or inf or the objective raised (a failed
        evaluation, logged; with `fail_fast` the exception propagates)."""
        try:
            value = self.fn(config)
        except Exception as err:  # (not KeyboardInterrupt)
            if self.fail_fast:
                raise
            log.warning(
                "objective raised %s: %s for %s; counted as a failed trial", type(err).__name__, err, config
            )
            self.errors.append((config, f"{type(err).__name__}: {err}"))
            return None
        if not isinstance(value, Mapping):
            raise TypeError(
                f"objective returned {value!r} for {config}; a multi-objective search needs a dict of metrics"
            )
        missing = [k for k in self.objectives if k not in value]
        if missing:
            raise TypeError(f"objective returned no {missing} for {config}; it must return every objective")
        metrics = {}
        for name in self.objectives:
            v = value[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"objective returned {name}={v!r} for {config}; it must be a number")
            if not math.isfinite(v):
                return None
            metrics[name] = float(v)
        return metrics

    def score(self, metrics: Mapping[str, float] | None) -> float:
        if metrics is None or not feasible(metrics, self.objectives, self.constraints):
            return FAILED_SCORE
        first = next(iter(self.objectives))
        return metrics[first] if self.objectives[first] == "max" else -metrics[first]


def multi_objective_search(
    objective: MultiObjective,
    space: SearchSpace,
    budget: int,
    warm_start: Sequence[WarmStart | dict] = (),
    sampler: str = "tpe",
    seed: int = 0,
    storage: str | None = None,
    study_name: str | None = None,
) -> SearchResult:
    """Evaluate the warm-start configs first (enqueued), then let the sampler propose.
    NSGA-II runs generations of 10 so that a budget of 50 sees five of them. `storage`:
    an Optuna storage URL to record the study in (optuna-dashboard opens it)."""
    import time

    import optuna

    from metanas.searchers.optuna_search import suggest

    if sampler not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {SAMPLERS}, got {sampler!r}")
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive number of evaluations, got {budget!r}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    names = list(objective.objectives)
    study = _study(objective, _sampler(sampler, seed), storage, study_name)
    fitted, dropped = fit_warm_start(space, warm_start)
    for ws in fitted:
        study.enqueue_trial(ws.config, skip_if_exists=False)
    trials: list[Trial] = []

    def run(trial: optuna.Trial):
        config = {p.name: suggest(trial, p) for p in space.params}
        metrics = objective(config)
        source = "warm_start" if trial.number < len(fitted) else "search"
        trials.append(Trial(config, objective.score(metrics), None, source, metrics))
        if metrics is None:
            return tuple(math.nan for _ in names)  # Optuna marks the trial failed
        for name, bound in objective.constraints.items():  # the samplers favour feasible trials
            trial.set_constraint(name, violation(metrics, objective.objectives, name, bound))
        return tuple(metrics[n] for n in names)

    start = time.perf_counter()
    study.optimize(run, n_trials=budget)
    return SearchResult(
        f"optuna_mo_{sampler}",
        trials,
        time.perf_counter() - start,
        dropped,
        objectives=dict(objective.objectives),
        constraints=dict(objective.constraints) or None,
    )


def _sampler(name: str, seed: int) -> Any:
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=10)
    return optuna.samplers.RandomSampler(seed=seed)


def _study(objective: MultiObjective, sampler: Any, storage: str | None, study_name: str | None) -> Any:
    """The Optuna study of a multi-objective search, its metrics named for optuna-dashboard."""
    import optuna

    names = list(objective.objectives)
    directions = ["maximize" if objective.objectives[n] == "max" else "minimize" for n in names]
    study = optuna.create_study(
        directions=directions,
        sampler=sampler,
        storage=storage,
        study_name=study_name,
        load_if_exists=storage is not None,
    )
    with warnings.catch_warnings():  # (experimental in Optuna, and harmless)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)  # what optuna-dashboard labels the axes with
    return study


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The volume that the points dominate above `reference`, every coordinate maximised
    (points not above the reference on every coordinate add nothing). Exact, by slicing
    along the first coordinate: fine for the few objectives and hundreds of points a
    search has."""
    pts = [tuple(p) for p in points if all(x > r for x, r in zip(p, reference))]
    if not pts:
        return 0.0
    if len(reference) == 1:
        return max(p[0] for p in pts) - reference[0]
    pts.sort(key=lambda p: -p[0])
    volume = 0.0
    for i, p in enumerate(pts):
        lower = pts[i + 1][0] if i + 1 < len(pts) else reference[0]
        if p[0] > lower:  # the slab between this point's first coordinate and the next one's
            volume += (p[0] - lower) * hypervolume([q[1:] for q in pts[: i + 1]], reference[1:])
    return volume
