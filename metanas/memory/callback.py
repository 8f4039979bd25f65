"""`MemoryCallback`: a plain Optuna study fills the memory, as `metanas.search` does.

    study.optimize(objective, n_trials=50, callbacks=[metanas.MemoryCallback(memory="mem/", task_id="t7")])

After every finished trial the study is stored as one memory record (every trial, the best,
the study's distributions as the record's space), under a key of its own: the study's
name. Each store replaces the one before (a higher `revision`: the number of finished
trials), so a resumed study updates its record and never duplicates it, and a crash loses
at most the trial that was running. The record is what `metanas.search` would store for
the same space: the next warm start cannot tell them apart.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from metanas.memory.records import TaskRecord
from metanas.memory.store import MemoryStore
from metanas.searchers.optuna_search import from_optuna
from metanas.searchers.space import SearchSpace

log = logging.getLogger(__name__)

KEY_PREFIX = "optuna"  # a study's record key: optuna/<study name>


def study_space(trials: Sequence[FrozenTrial]) -> SearchSpace:
    """The study's parameters as a metanas space: every parameter its trials suggested,
    in the order they first did, with the newest distribution of each (one Optuna cannot
    hold as a metanas parameter is left out)."""
    distributions: dict[str, Any] = {}
    for t in trials:
        distributions.update(t.distributions)
    params = []
    for name, distribution in distributions.items():
        try:
            params.append(from_optuna(name, distribution))
        except ValueError as err:
            log.warning("memory callback: %s: not stored", err)
    return SearchSpace(tuple(params), "study")


def study_trials(study: Study, trials: Sequence[FrozenTrial]) -> list[dict[str, Any]]:
    """The finished trials as a memory record holds them: `score` maximised (a failed trial
    -inf; a pruned one none: its last value is of a lower fidelity), and Optuna's own
    number, state, value(s) and duration beside."""
    signs = [1.0 if d == StudyDirection.MAXIMIZE else -1.0 for d in study.directions]
    names = study.metric_names or [f"objective_{i}" for i in range(len(signs))]
    out = []
    for t in trials:
        if t.state == TrialState.COMPLETE and t.values is not None:
            score = signs[0] * t.values[0]
        elif t.state == TrialState.FAIL:
            score = -math.inf
        else:
            score = None
        row: dict[str, Any] = {
            "config": dict(t.params),
            "score": score,
            "budget": None,
            "source": "optuna",
            "number": t.number,
            "state": t.state.name,
            "duration": t.duration.total_seconds() if t.duration is not None else None,
        }
        if len(signs) > 1:
            row["metrics"] = dict(zip(names, t.values)) if t.values is not None else None
        elif t.state == TrialState.PRUNED and t.intermediate_values:
            row["value"] = t.intermediate_values[max(t.intermediate_values)]
        else:
            row["value"] = t.value
        out.append(row)
    return out


class MemoryCallback:
    def __init__(
        self,
        memory: str | Path,
        task_id: str | None = None,
        *,
        family: str = "default",
        embedding: tuple[str, Sequence[float]] | None = None,
        campaign_id: str = "",
    ) -> None:
        """`task_id`: the task the study searches (default: the study's name). `embedding=
        (embedder, vector)`: the task's embedding, if known (e.g. dataset meta-features);
        otherwise estimated from the trials, as `metanas.search` does."""
        if not isinstance(family, str) or not family:
            raise ValueError(f"family: a non-empty name, got {family!r}")
        if task_id is not None and (not isinstance(task_id, str) or not task_id):
            raise ValueError(f"task_id: a non-empty name, got {task_id!r}")
        if embedding is not None:
            vector = np.asarray(embedding[1], dtype=np.float32)
            if vector.ndim != 1 or not len(vector) or not np.isfinite(vector).all():
                raise ValueError("embedding: (embedder, a non-empty finite vector)")
            embedding = (str(embedding[0]), vector)
        self.memory, self.task_id, self.family, self.embedding, self.campaign_id = (
            Path(memory),
            task_id,
            family,
            embedding,
            campaign_id,
        )
        self.stored = 0  # records written by this callback
        # (opened once, here: a path that is no memory fails before any trial)
        self._store = MemoryStore(self.memory)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_store": None}  # (opened again where it is unpickled)

    def __call__(self, study: Study, trial: FrozenTrial) -> None:
        record = study_record(study, self.task_id, self.family, self.embedding, self.campaign_id)
        if record is not None:
            if self._store is None:
                self._store = MemoryStore(self.memory)
            self.stored += self._store.append([record])


def finished_study(
    name: str, direction: str, distributions: dict[str, Any], results: Sequence[tuple[dict[str, Any], Any]]
) -> Study:
    """An in-memory Optuna study of finished evaluations (`results`: params and value; a
    value that is None or not a finite number, a failed trial), for evaluations made outside
    Optuna (a Tune run, a benchmark's searches) to be stored as a study's record is."""
    import optuna

    study = optuna.create_study(direction=direction, study_name=name)
    for params, value in results:
        params = {k: v for k, v in params.items() if k in distributions}
        ok = isinstance(value, (int, float)) and math.isfinite(value)
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={k: distributions[k] for k in params},
                value=float(value) if ok else None,
                state=TrialState.COMPLETE if ok else TrialState.FAIL,
            )
        )
    return study


def study_record(
    study: Study,
    task_id: str | None = None,
    family: str = "default",
    embedding: tuple[str, Any] | None = None,
    campaign_id: str = "",
    key: str | None = None,
) -> TaskRecord | None:
    """The study as one memory record (under `key`, default optuna/<study name>), or None
    while it has no complete trial."""
    from metanas.memory.embedders import estimated_landmarks

    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    trials = study_trials(study, finished)
    scored = [t for t in trials if t["score"] is not None and math.isfinite(t["score"])]
    if not scored:
        return None
    space = study_space(finished)
    best = max(scored, key=lambda t: t["score"])
    if (
        embedding is None
    ):  # (from the parameters every scored trial has: all of them, unless some are conditional)
        shared = space.project([n for n in space.names if all(n in t["config"] for t in scored)])
        usable = [{**t, "config": c} for t in scored if (c := shared.config_from(t["config"])) is not None]
        embedding = (
            estimated_landmarks(shared, usable)
            if usable and shared.params
            else ("none", np.zeros(1, np.float32))
        )
    return TaskRecord(
        key=key or f"{KEY_PREFIX}/{study.study_name}",
        task_id=task_id or study.study_name,
        family=family,
        embedder=embedding[0],
        embedding=embedding[1],
        space_signature=space.signature,
        best_config=best["config"],
        best_score=best["score"],
        trials=trials,
        searcher=f"optuna+{type(study.sampler).__name__}",
        campaign_id=campaign_id,
        created_at=time.time(),
        space=space.to_spec(),
        revision=len(finished),
    )
