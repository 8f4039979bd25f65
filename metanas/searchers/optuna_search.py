"""Optuna search (TPE by default). Warm-start configs are enqueued (`enqueue_trial`) so they
are evaluated first; scores already known for this task are told with `add_trial`, costing
no evaluation. Objectives that take a budget are evaluated at increasing fidelities and
pruned by a successive-halving pruner."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from metanas.searchers.base import FAILED_SCORE, Objective, Searcher, Trial, WarmStart
from metanas.searchers.space import Categorical, Float, Int, Param, SearchSpace, choices_param

log = logging.getLogger(__name__)


def to_optuna(p: Param) -> Any:
    """One parameter as Optuna's distribution (an Ordinal is a categorical to Optuna)."""
    import optuna.distributions as od

    if isinstance(p, Categorical):
        return od.CategoricalDistribution(list(p.choices))
    if isinstance(p, Int):
        return od.IntDistribution(p.low, p.high, log=p.log, step=p.step or 1)
    return od.FloatDistribution(p.low, p.high, log=p.log, step=p.step)


def from_optuna(name: str, distribution: Any) -> Param:
    """Optuna's distribution as a metanas parameter; ValueError for one it cannot hold.
    Choices that are more than two numbers in increasing order are a grid (`Ordinal`)."""
    import optuna.distributions as od

    if isinstance(distribution, od.CategoricalDistribution):
        return choices_param(name, distribution.choices)
    if isinstance(distribution, od.IntDistribution):
        return Int(
            name, int(distribution.low), int(distribution.high), distribution.log, int(distribution.step)
        )
    if isinstance(distribution, od.FloatDistribution):
        return Float(
            name, float(distribution.low), float(distribution.high), distribution.log, distribution.step
        )
    raise ValueError(f"parameter {name!r}: no metanas parameter for {type(distribution).__name__}")


def optuna_distributions(space: SearchSpace) -> dict[str, Any]:
    """The space in Optuna's terms, one distribution per parameter (also what Ray Tune's
    OptunaSearch takes)."""
    return {p.name: to_optuna(p) for p in space.params}


def suggest(trial, p: Param):
    if isinstance(p, Categorical):
        return trial.suggest_categorical(p.name, list(p.choices))
    if isinstance(p, Int):
        return trial.suggest_int(p.name, p.low, p.high, log=p.log, step=p.step or 1)
    return trial.suggest_float(p.name, p.low, p.high, log=p.log, step=p.step)


class OptunaSearcher(Searcher):
    name = "optuna"

    def __init__(
        self,
        seed: int = 0,
        sampler: Any = "tpe",
        fidelities: Sequence[float] | None = None,
        storage: str | None = None,
        study_name: str | None = None,
    ) -> None:
        """`sampler`: 'tpe', 'cmaes', 'random', or an Optuna sampler object (e.g.
        `metanas.MemorySampler`), used as it is (its own seed applies). `storage`: an Optuna
        storage URL (e.g. sqlite:///searches.db) to record the study in, under
        `study_name`, so optuna-dashboard can open it."""
        super().__init__(seed)
        self.storage, self.study_name = storage, study_name
        if isinstance(sampler, str) and sampler not in ("tpe", "cmaes", "random"):
            raise ValueError(
                f"sampler: expected 'tpe', 'cmaes', 'random' or an Optuna sampler, got {sampler!r}"
            )
        self.sampler = sampler
        self.fidelities = list(fidelities) if fidelities else None
        if not isinstance(sampler, str):
            self.name = f"optuna+{type(sampler).__name__}"

    def _make_sampler(self):
        import optuna

        if not isinstance(self.sampler, str):
            return self.sampler
        if self.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=5, multivariate=True)
        if self.sampler == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=self.seed)
        return optuna.samplers.RandomSampler(seed=self.seed)

    def _search(
        self, objective: Objective, space: SearchSpace, budget: int, warm_start: list[WarmStart]
    ) -> list[Trial]:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        dists = optuna_distributions(space)
        pruner = (
            optuna.pruners.SuccessiveHalvingPruner()
            if self.fidelities and objective.takes_budget
            else optuna.pruners.NopPruner()
        )
        study = optuna.create_study(
            direction="maximize",
            sampler=self._make_sampler(),
            pruner=pruner,
            storage=self.storage,
            study_name=self.study_name,
            load_if_exists=self.storage is not None,
        )
        trials: list[Trial] = []
        for ws in warm_start:
            if ws.score is not None:
                study.add_trial(
                    optuna.trial.create_trial(params=ws.config, distributions=dists, value=ws.score)
                )
                trials.append(Trial(ws.config, ws.score, None, "known"))
        queued = [ws.config for ws in warm_start if ws.score is None]
        for config in queued:
            study.enqueue_trial(config, skip_if_exists=False)
        # Known trials took the first trial numbers, the enqueued warm starts the next ones.
        first_searched = len(trials) + len(queued)

        def run(trial: optuna.Trial) -> float:
            config = {p.name: suggest(trial, p) for p in space.params}
            source = "warm_start" if trial.number < first_searched else "search"
            if self.fidelities and objective.takes_budget:
                score = FAILED_SCORE
                for step, fidelity in enumerate(self.fidelities):
                    score = objective(config, fidelity)
                    trial.report(score, step)
                    if step < len(self.fidelities) - 1 and trial.should_prune():
                        trials.append(Trial(config, score, fidelity, source))
                        raise optuna.TrialPruned()
                trials.append(Trial(config, score, self.fidelities[-1], source))
                return score
            score = objective(config)
            trials.append(Trial(config, score, None, source))
            return score

        study.optimize(run, n_trials=budget)
        return trials
