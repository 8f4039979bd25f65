"""Ray Tune search: a `Tuner` driven by `OptunaSearch`, so one search can spread its trials
over the cluster. Warm-start configs become `points_to_evaluate`; scores already known for
this task are told to the searcher (`add_evaluated_point`, the same path Ray takes for
`evaluated_rewards`). Objectives that take a budget are reported once per fidelity and
stopped early by ASHA."""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Sequence
from typing import Any

from metanas.searchers.base import FAILED_SCORE, Objective, Searcher, Trial, WarmStart
from metanas.searchers.optuna_search import optuna_distributions
from metanas.searchers.space import SearchSpace

# Tune's schedulers and result files want finite numbers: a failed config is reported to
# Tune as this (lowest) score, and recorded as FAILED_SCORE like in every other searcher.
_TUNE_FAILED = -1e30

log = logging.getLogger(__name__)


def _trainable(objective: Objective, fidelities: list[float] | None):
    from ray import tune

    def report(score: float, **extra: Any) -> None:
        failed = not math.isfinite(score)
        tune.report({"score": _TUNE_FAILED if failed else score, "failed": failed, **extra})

    def run(config: dict[str, Any]) -> None:
        if fidelities:
            for fidelity in fidelities:
                report(objective(config, fidelity), fidelity=fidelity)
        else:
            report(objective(config))

    return run


class TuneSearcher(Searcher):
    name = "tune"

    def __init__(
        self,
        seed: int = 0,
        fidelities: Sequence[float] | None = None,
        max_concurrent: int = 2,
        resources_per_trial: dict[str, float] | None = None,
        sampler: Any = None,
    ) -> None:
        """`sampler`: the Optuna sampler behind Tune's OptunaSearch (default TPE), e.g.
        `metanas.MemorySampler` for a search warm-started from a memory."""
        super().__init__(seed)
        self.fidelities = list(fidelities) if fidelities else None
        self.max_concurrent = max_concurrent
        self.resources = resources_per_trial or {"cpu": 1}
        self.sampler = sampler

    def _search(
        self, objective: Objective, space: SearchSpace, budget: int, warm_start: list[WarmStart]
    ) -> list[Trial]:
        import optuna
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        from metanas.cluster.connect import connect

        connect()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        known = [ws for ws in warm_start if ws.score is not None]
        queued = [ws.config for ws in warm_start if ws.score is None]
        sampler = self.sampler or optuna.samplers.TPESampler(
            seed=self.seed, n_startup_trials=5, multivariate=True
        )
        searcher = OptunaSearch(
            space=optuna_distributions(space),
            metric="score",
            mode="max",
            points_to_evaluate=queued or None,
            sampler=sampler,
        )
        for ws in known:
            searcher.add_evaluated_point(ws.config, ws.score)
        use_fidelity = bool(self.fidelities) and objective.takes_budget
        scheduler = FIFOScheduler()
        if use_fidelity:  # successive halving over the fidelities
            scheduler = ASHAScheduler(
                time_attr="training_iteration", max_t=len(self.fidelities), grace_period=1, reduction_factor=3
            )
        with tempfile.TemporaryDirectory(prefix="metanas-tune-") as storage:
            tuner = tune.Tuner(
                tune.with_resources(
                    _trainable(objective, self.fidelities if use_fidelity else None), self.resources
                ),
                tune_config=tune.TuneConfig(
                    search_alg=ConcurrencyLimiter(searcher, max_concurrent=self.max_concurrent),
                    scheduler=scheduler,
                    metric="score",
                    mode="max",
                    num_samples=budget,
                ),
                run_config=tune.RunConfig(storage_path=storage, name="search", verbose=0),
            )
            grid = tuner.fit()
            rows = []
            for result in grid:
                if result.error or result.metrics is None or "score" not in result.metrics:
                    log.warning("a Tune trial failed: %s", result.error)
                    continue
                m = result.metrics
                score = FAILED_SCORE if m.get("failed") else m["score"]
                rows.append(
                    (m.get("timestamp", 0), m.get("trial_id", ""), result.config, score, m.get("fidelity"))
                )
        return _trials(rows, known, queued, space)


def _trials(rows: list[tuple], known: list[WarmStart], queued: list[dict], space: SearchSpace) -> list[Trial]:
    """The search's trials in the order Tune finished them, after the known ones; a
    queued warm-start config is one the first time it comes back."""
    rows.sort(key=lambda r: (r[0], r[1]))
    trials = [Trial(ws.config, ws.score, None, "known") for ws in known]
    pending_warm = [dict(c) for c in queued]
    for _, _, config, score, fidelity in rows:
        config = {k: config[k] for k in space.names}
        source = "warm_start" if config in pending_warm else "search"
        if source == "warm_start":
            pending_warm.remove(config)
        trials.append(Trial(config, float(score), fidelity, source))
    return trials
