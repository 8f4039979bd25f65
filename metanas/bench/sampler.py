"""`metanas bench sampler`: what `MemorySampler` costs a study per trial, against Optuna's
own TPE, side by side in one run.

A memory of `tasks` past studies (each `trials` trials of a define-by-run objective over a
log-scaled float, a stepped int, a categorical and a conditional float; stored by
`MemoryCallback`), then, alternating, a study with `MemorySampler` and one with
`TPESampler` on a new task of the family, `repeats` times each. A trial's duration
(Optuna's, ask to tell) is the sampler's cost: the objective is a formula. Reported: the
first trial (the memory read and the model built; the kept surrogate trained before the
timed runs), the median of the other model-phase trials, and the median after the hand-over
against TPE's median over the same trial numbers.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from metanas.memory.sampler import HANDOFF, MemorySampler


def family_objective(shift: float) -> Callable:
    """A task of the benchmark's family: the best lr and width move with `shift`."""

    def objective(trial) -> float:
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        width = trial.suggest_int("width", 16, 512, step=16)
        act = trial.suggest_categorical("act", ["relu", "gelu", "tanh"])
        score = (
            -abs(math.log10(lr) + 3 + shift) - abs(width - 128 * (1 + shift)) / 256 + 0.2 * (act == "gelu")
        )
        if act == "relu":
            score -= 0.1 * trial.suggest_float("drop", 0.0, 0.5)
        return score

    return objective


def _durations(study) -> np.ndarray:
    return np.asarray([t.duration.total_seconds() * 1000 for t in study.trials])


def bench_sampler(tasks: int = 64, trials: int = 50, repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    import optuna

    from metanas.memory.callback import MemoryCallback

    if tasks < 1 or trials <= HANDOFF or repeats < 1:
        raise ValueError(f"tasks >= 1, trials > {HANDOFF} and repeats >= 1, got {tasks}, {trials}, {repeats}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(seed)
    memory = tempfile.mkdtemp(prefix="bench-sampler-")
    try:
        for i in range(tasks):  # the memory: past studies of the family, stored by the callback
            study = optuna.create_study(
                direction="maximize", study_name=f"past{i}", sampler=optuna.samplers.RandomSampler(seed=i)
            )
            study.optimize(family_objective(float(rng.uniform(-0.5, 0.5))), n_trials=trials)
            MemoryCallback(memory, task_id=f"past{i}")(study, study.trials[-1])
        # (the surrogate is trained once, as a memory's first search would, before anything is timed)
        optuna.create_study(
            direction="maximize", sampler=MemorySampler(memory=memory, task_id="warmup", seed=seed)
        ).optimize(family_objective(0.0), n_trials=1)
        first, model, after, tpe, proposals = [], [], [], [], 0
        for r in range(repeats):
            objective = family_objective(float(rng.uniform(-0.5, 0.5)))
            sampler = MemorySampler(memory=memory, task_id=f"new{r}", seed=seed + r)
            study = optuna.create_study(direction="maximize", sampler=sampler)
            study.optimize(objective, n_trials=trials)
            plain = optuna.create_study(
                direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed + r)
            )
            plain.optimize(objective, n_trials=trials)
            ours, theirs = _durations(study), _durations(plain)
            first.append(ours[0])
            model += ours[1:HANDOFF].tolist()
            after += ours[HANDOFF:].tolist()
            tpe += theirs[HANDOFF:].tolist()
            proposals += len(sampler.history)
    finally:
        shutil.rmtree(memory, ignore_errors=True)
    return {
        "stored_tasks": tasks,
        "trials": trials,
        "repeats": repeats,
        "model_proposals": proposals,
        "first_trial_ms": median(first),
        "model_phase_median_ms": median(model),
        "model_phase_p90_ms": round(float(np.percentile(model, 90)), 2),
        "after_handover_median_ms": median(after),
        "tpe_median_ms": median(tpe),
        "after_handover_vs_tpe": round(float(np.median(after) / np.median(tpe)), 3),
    }


def median(xs) -> float:
    return round(float(np.median(xs)), 2)
