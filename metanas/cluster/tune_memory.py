"""`MemoryTuneCallback`: a Ray Tune run fills the memory, as `MemoryCallback` does for an
Optuna study (and `metanas.search` for its own searches).

    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True), ...}
    sampler = metanas.MemorySampler(memory="mem/", task_id="t7")
    search = OptunaSearch(space, metric="acc", mode="max", sampler=sampler)
    callback = MemoryTuneCallback("mem/", "t7", space=space, metric="acc", mode="max")
    tuner = tune.Tuner(train, tune_config=tune.TuneConfig(search_alg=search, num_samples=50),
                       run_config=tune.RunConfig(callbacks=[callback]))

After every finished trial the run so far is stored as one memory record (key
`tune/<name>`, default the task id), replacing the one before: the same record an Optuna
study of those trials would leave (`metanas.memory.callback.study_record`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ray.tune import Callback

from metanas.memory.callback import finished_study, study_record
from metanas.memory.store import MemoryStore
from metanas.searchers.optuna_search import optuna_distributions
from metanas.searchers.space import SearchSpace

log = logging.getLogger(__name__)


class MemoryTuneCallback(Callback):
    def __init__(
        self,
        memory: str | Path,
        task_id: str,
        *,
        space: Mapping[str, Any] | SearchSpace,
        metric: str,
        mode: str,
        name: str | None = None,
        family: str = "default",
        embedding: tuple[str, Sequence[float]] | None = None,
    ) -> None:
        """`space`: the Optuna distributions given to `OptunaSearch` (or a metanas space);
        `metric`, `mode`: as given to Tune."""
        if mode not in ("max", "min"):
            raise ValueError(f"mode: 'max' or 'min', got {mode!r}")
        if not isinstance(task_id, str) or not task_id:
            raise ValueError(f"task_id: a non-empty name, got {task_id!r}")
        self.distributions = optuna_distributions(space) if isinstance(space, SearchSpace) else dict(space)
        self.memory, self.task_id, self.metric, self.mode = Path(memory), task_id, metric, mode
        self.name, self.family, self.embedding = name or task_id, family, embedding
        self.finished: dict[str, Any] = {}  # Tune trial id -> (params, value or None: an error)
        # (opened once, here: a path that is no memory fails before any trial)
        self.store = MemoryStore(self.memory)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        value = (trial.last_result or {}).get(self.metric)
        self.finished[trial.trial_id] = (trial.config, value)
        self._write()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finished[trial.trial_id] = (trial.config, None)
        self._write()

    def _write(self) -> None:
        direction = "maximize" if self.mode == "max" else "minimize"
        study = finished_study(self.name, direction, self.distributions, list(self.finished.values()))
        record = study_record(study, self.task_id, self.family, self.embedding, key=f"tune/{self.name}")
        if record is not None:
            self.store.append([record])
