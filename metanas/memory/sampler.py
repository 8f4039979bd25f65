"""`MemorySampler`: transfer from a metanas memory inside an Optuna study, so Optuna (and
Ray Tune, through `OptunaSearch(sampler=...)`) users get it without leaving their study.

    study = optuna.create_study(direction="maximize", sampler=metanas.MemorySampler(space, memory="mem/"))
    study.optimize(objective, n_trials=50)

Each trial asks the memory's model (`metanas.memory.transfer.MemoryModel`) for the next
config, given the study's finished and running trials. After `handoff` trials, or as soon
as no stored task ranks the study's results better than chance, Optuna's TPE takes over
with every trial so far: the model is best at choosing the first evaluations, TPE at
refining (measured in `metanas bench warmstart`).

Parallel trials (`n_jobs`, or processes sharing one storage) never get the same proposal:
each proposal is written to its trial's system attributes before the trial runs, every
proposal counts the others in flight as taken, and a trial whose proposal turns out to
collide with another's (two processes proposed at once) proposes again.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import threading
from pathlib import Path
from typing import Any, Sequence

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from metanas.memory.acquisition import MIN_EVIDENCE
from metanas.memory.transfer import MemoryModel, Proposal
from metanas.memory.records import PastTask
from metanas.memory.warmstart import memory_model
from metanas.searchers.optuna_search import optuna_distributions
from metanas.searchers.space import SearchSpace, config_key

log = logging.getLogger(__name__)

HANDOFF = 20  # trials chosen by the memory's model before TPE takes over
PROPOSAL_ATTR = "metanas:proposal"  # a trial's system attribute: the config proposed for it
RETRIES = 3  # proposals again after a collision with another process's


class MemorySampler(BaseSampler):
    def __init__(
        self,
        space: SearchSpace,
        memory: str | Path | None = None,
        *,
        past: Sequence[PastTask] | None = None,
        task_id: str = "",
        family: str | None = None,
        seed: int = 0,
        handoff: int = HANDOFF,
        model: MemoryModel | None = None,
        embedding: tuple[str, Sequence[float]] | None = None,
    ) -> None:
        """`memory`: a memory directory (its records of `space`, except `task_id`'s own, are
        the stored tasks; the trained surrogate is kept there). `past`: the stored tasks
        given directly instead (or `model`, already built from them). None of them: a cold
        search (TPE). `embedding=(embedder, vector)`: the new task's, by the embedder of the
        stored records (e.g. dataset meta-features): the stored tasks are then its nearest,
        and start weighted by similarity."""
        if not isinstance(space, SearchSpace):
            raise TypeError(f"space must be a metanas SearchSpace, got {type(space).__name__}")
        self.space = space
        self.memory = Path(memory) if memory is not None else None
        self.past = list(past) if past is not None else None
        self.task_id, self.family, self.seed, self.handoff = task_id, family, seed, handoff
        self.distributions = optuna_distributions(space)
        # constant_liar: TPE too counts running trials, so parallel workers spread out
        self.tpe = TPESampler(seed=seed, n_startup_trials=5, multivariate=True, constant_liar=True)
        self.embedding = embedding
        self.model: MemoryModel | None = model
        self.handed_over = model is not None and not model.tasks  # nothing to transfer: a cold TPE search
        self.history: list[Proposal] = []  # what the model proposed, and why (its task weights)
        self._lock = threading.Lock()  # one proposal at a time (n_jobs threads share the sampler)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]  # (Ray Tune pickles its searcher, sampler included)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _model(self) -> MemoryModel:
        if self.model is None:
            if self.past is None and self.memory is not None:
                from metanas.memory.store import MemoryStore

                store = MemoryStore(self.memory)
                _, self.model = memory_model(store, self.space, "model", self.family, self.task_id, self.seed, 0, self.embedding)
            else:
                vector = None if self.embedding is None else self.embedding[1]
                self.model = MemoryModel(self.space, self.past or [], self.seed, embedding=vector)
            log.debug("memory sampler: %d stored tasks of this space", len(self.model.tasks))
            self.handed_over = not self.model.tasks  # nothing to transfer: a cold TPE search
        return self.model

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.tpe.infer_relative_search_space(study, trial) if self.handed_over else dict(self.distributions)

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        with self._lock:
            if not self.handed_over:
                config = self._propose(study, trial)
                if config is not None:
                    return config
            return self.tpe.sample_relative(study, trial, self.tpe.infer_relative_search_space(study, trial))

    def _propose(self, study: Study, trial: FrozenTrial) -> dict[str, Any] | None:
        """The model's proposal for `trial`, written to the trial before it returns; None
        once TPE takes over."""
        model = self._model()
        for attempt in itertools.count():
            configs, scores, pending, _ = self._history(study, trial)
            if self.handed_over:
                return None
            proposal = model.suggest(configs, scores, pending)
            cold = len(configs) >= MIN_EVIDENCE and not proposal.weights.sum()
            if len(configs) >= self.handoff or cold:
                log.debug("memory sampler: TPE takes over after %d trials (%s)", len(configs), "nothing transfers" if cold else "hand-off")
                self.handed_over = True
                return None
            study._storage.set_trial_system_attr(trial._trial_id, PROPOSAL_ATTR, config_key(proposal.config))
            collided = config_key(proposal.config) in self._history(study, trial)[3]
            if not collided or attempt == RETRIES:
                self.history.append(proposal)
                return proposal.config

    def _history(self, study: Study, trial: FrozenTrial) -> tuple[list, list, list, set[str]]:
        """The study's evaluated configs and scores (maximised; a failed or pruned trial
        -inf), the configs of the other running trials (their parameters, or what was
        proposed for them), and those configs' keys."""
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        configs, scores, pending = [], [], []
        for t in study.get_trials(deepcopy=False):
            if t.number == trial.number:
                continue
            if set(self.space.names) <= set(t.params):
                config = {n: t.params[n] for n in self.space.names}
            elif t.state == TrialState.RUNNING and PROPOSAL_ATTR in t.system_attrs:
                config = json.loads(t.system_attrs[PROPOSAL_ATTR])
            else:
                continue
            if t.state == TrialState.RUNNING:
                pending.append(config)
            elif t.state == TrialState.COMPLETE and t.value is not None:
                configs.append(config)
                scores.append(sign * t.value)
            elif t.state in (TrialState.FAIL, TrialState.PRUNED):
                configs.append(config)
                scores.append(float("-inf"))
        return configs, scores, pending, {config_key(c) for c in pending}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        return self.tpe.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.tpe.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self.tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """A fresh seed for TPE and the model (Optuna calls this in each worker process)."""
        self.tpe.reseed_rng()
        self.seed = random.SystemRandom().randrange(2**31)
        if self.model is not None:
            self.model.seed = self.seed

