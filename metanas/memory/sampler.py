"""`MemorySampler`: transfer from a metanas memory inside a plain Optuna study, so Optuna
(and Ray Tune, through `OptunaSearch(sampler=...)`) users get it without leaving their study.

    sampler = metanas.MemorySampler(memory="mem/", task_id="t7")
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=50, callbacks=[metanas.MemoryCallback(memory="mem/", task_id="t7")])

The space is the study's own: as the objective suggests parameters, the sampler picks the
stored space that knows the most of them (by name and distribution: kind, range, log,
step), and the memory's model (`metanas.memory.memory_model.MemoryModel`) proposes each trial's
config over the parameters the memory knows exactly as the study does and every finished
trial has. Every other parameter (unknown to the memory, known with another distribution,
or conditional) is sampled by the fallback sampler, with one warning naming it. After
`handoff` trials, or as soon as no stored task ranks the study's results better than
chance, the fallback (TPE by default) takes over with every trial so far: the model is
best at choosing the first evaluations, TPE at refining (`metanas bench warmstart`).
A metanas `SearchSpace` may still be given: then the model works on it alone.

Parallel trials (`n_jobs`, or processes sharing one storage) never get the same proposal:
each proposal is written to its trial's system attributes before the trial runs, every
proposal counts the others in flight as taken, and when two trials' proposals collide
(two processes proposed at once) the lower-numbered keeps it and the other proposes
again (`_must_yield`). Enqueued trials
(`enqueue_trial`) keep their values. A pruned trial is no evidence (its last value is of a
lower fidelity than a finished trial's) but its config is not proposed again.

A multi-objective study (objectives named by `study.set_metric_names`, as the stored
trials' metrics are) starts from the stored tasks' Pareto sets, points spread along each
front, round-robin over the stored tasks (`metanas.memory.policies.pareto`), then hands
over to the fallback: give a multi-objective one (TPE, the default, or NSGA-II).
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from metanas.memory.acquisition import MIN_EVIDENCE
from metanas.memory.memory_model import MemoryModel, Proposal
from metanas.memory.past_tasks import memory_model, past_tasks, projected
from metanas.memory.policies.base import Start
from metanas.memory.policies.pareto import ParetoWarmStart
from metanas.memory.records import PastTask
from metanas.memory.store import MemoryStore
from metanas.searchers.optuna_search import to_optuna
from metanas.searchers.space import Param, SearchSpace, config_key

log = logging.getLogger(__name__)

HANDOFF = 20  # trials chosen by the memory's model before the fallback takes over
PROPOSAL_ATTR = "metanas:proposal"  # a trial's system attribute: the config proposed for it
WHY_ATTR = (
    "metanas:why"  # a trial's system attribute: which model step proposed it, leaning on which stored tasks
)
TOP_TASKS = 5  # stored tasks named in each proposal's `why`
RETRIES = 3  # proposals again after a collision with another process's
COLLISION_WAIT_S = 5.0  # the longest a proposal waits for another process's to be decided


def _must_yield(study: Study, trial: FrozenTrial, key: str, space: SearchSpace) -> bool:
    """Whether `trial` must give up proposal `key`, which it has just written, because
    another trial took the same config since this one read the study's history: one that
    has finished with it (it ran while this proposal was being made), or a running one that
    proposed it at the same moment. Of two running ones the lower-numbered keeps it, unless
    the higher-numbered has already committed to it (written its `WHY_ATTR`, having checked
    before this one wrote); one still deciding is waited for. So exactly one keeps it and
    the other proposes again (a symmetric rule made both yield, then propose the same again
    in lockstep)."""
    deadline = time.monotonic() + COLLISION_WAIT_S
    for other in study.get_trials(deepcopy=False):
        if other.number == trial.number or other.state == TrialState.WAITING:
            continue
        if other.state != TrialState.RUNNING:
            config = space.config_from(other.params)
            if other.system_attrs.get(PROPOSAL_ATTR) == key or (config and config_key(config) == key):
                return True
            continue
        while other.system_attrs.get(PROPOSAL_ATTR) == key:
            if other.number < trial.number or WHY_ATTR in other.system_attrs:
                return True
            if time.monotonic() > deadline:
                return True  # (it never decided: give way rather than risk a repeat)
            time.sleep(0.01)
            other = study._storage.get_trial(other._trial_id)
    return False


def tuned_tpe(seed: int | None) -> TPESampler:
    """The TPE `metanas.search` hands over to (what `metanas bench warmstart` measured):
    multivariate, 5 start-up trials, and constant_liar so parallel workers spread out."""
    return TPESampler(seed=seed, n_startup_trials=5, multivariate=True, constant_liar=True)


def top_tasks(weights: dict[str, float]) -> dict[str, float]:
    """The `TOP_TASKS` stored tasks of most weight (rounded), for a trial's `why`."""
    best = sorted(((w, t) for t, w in weights.items() if w > 0), reverse=True)[:TOP_TASKS]
    return {t: round(float(w), 4) for w, t in best}


def same(param: Param, distribution: BaseDistribution) -> bool:
    """Whether a metanas parameter is the Optuna distribution (kind, range, log, step)."""
    return to_optuna(param) == distribution


def _check_arguments(space: Any, past: Any, handoff: Any, fallback: Any) -> None:
    """One-line errors for MemorySampler's arguments, before any work."""
    if space is not None and not isinstance(space, SearchSpace):
        raise TypeError(
            "space must be a metanas SearchSpace (or leave it out: the study's own), got "
            f"{type(space).__name__}"
        )
    if past is not None and space is None:
        raise ValueError("past: stored tasks given directly need the space their trials are of")
    if isinstance(handoff, bool) or not isinstance(handoff, int) or handoff < 0:
        raise ValueError(f"handoff: a number of trials >= 0, got {handoff!r}")
    if fallback is not None and not isinstance(fallback, BaseSampler):
        raise TypeError(f"fallback must be an Optuna sampler, got {type(fallback).__name__}")


class MemorySampler(BaseSampler):
    def __init__(
        self,
        space: SearchSpace | str | Path | None = None,
        memory: str | Path | None = None,
        *,
        task_id: str = "",
        family: str | None = None,
        past: Sequence[PastTask] | None = None,
        model: MemoryModel | None = None,
        embedding: tuple[str, Sequence[float]] | None = None,
        seed: int | None = None,
        handoff: int = HANDOFF,
        fallback: BaseSampler | None = None,
    ) -> None:
        """`memory`: a memory directory (its records, except `task_id`'s own, are the stored
        tasks; the trained surrogate is kept there). `space`: a metanas `SearchSpace` the
        model works on instead of the study's own parameters (the first argument may also
        be the memory). `past`: stored tasks of `space` given directly (or `model`, already
        built from them). No memory: a plain search by the fallback. `embedding=(embedder,
        vector)`: the new task's, by the embedder of the stored records: the stored tasks
        start weighted by similarity. `fallback`: the sampler for everything the model does
        not choose (default `TPESampler(seed=seed)`)."""
        if isinstance(space, (str, Path)) and memory is None:
            space, memory = None, space
        if model is not None:
            space = space or model.space
        _check_arguments(space, past, handoff, fallback)
        self.space = space
        self.memory = Path(memory) if memory is not None else None
        self.past = list(past) if past is not None else None
        self.task_id, self.family, self.handoff, self.embedding = task_id, family, handoff, embedding
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
        self.fallback = fallback if fallback is not None else TPESampler(seed=self.seed)
        self.model: MemoryModel | None = model
        self.handed_over = (memory is None and past is None and model is None) or (
            model is not None and not model.tasks
        )
        self.history: list[Proposal] = []  # what the model proposed, and why (its task weights)
        # trial id -> (config, its space)
        self._proposals: dict[int, tuple[dict[str, Any] | None, SearchSpace | None]] = {}
        # the memory's spaces, with their record counts
        self._stored: list[tuple[SearchSpace, int]] | None = None
        # (space params, the stored Pareto sets' configs) of a multi-objective study
        self._fronts: tuple | None = None
        # trial id -> the fallback's relative space and sample for it
        self._handed_over_in: dict[int, tuple] = {}
        self._by_fallback: dict[str, str] = {}  # parameters the fallback sampled in the model phase -> why
        self._warned: set[str] = set()
        self._store: MemoryStore | None = None  # the memory, once opened
        self._lock = threading.Lock()  # one proposal at a time (n_jobs threads share the sampler)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]  # (Ray Tune pickles its searcher, sampler included)
        state["_store"] = None  # (opened again where it is unpickled)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- Optuna's sampler interface ------------------------------------------------------

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        # (in the model phase every parameter comes through sample_independent, one at a
        # time as the objective suggests it: the study's space is whatever it suggests)
        if (
            not self.handed_over
            and sum(t.state.is_finished() for t in study.get_trials(deepcopy=False)) >= self.handoff
        ):
            self.handed_over = True  # (this trial is the fallback's already, relative sampling included)
        return self.fallback.infer_relative_search_space(study, trial) if self.handed_over else {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        out = dict(self.fallback.sample_relative(study, trial, search_space)) if self.handed_over else {}
        for name, distribution in search_space.items():  # (a value for every parameter it is asked for)
            if name not in out:
                out[name] = self.sample_independent(study, trial, name, distribution)
        return out

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        if not self.handed_over:
            with self._lock:
                config, space = self._proposal(study, trial, {param_name: param_distribution})
            if config is not None and param_name in config and same(space[param_name], param_distribution):
                value = config[param_name]
                if isinstance(param_distribution, CategoricalDistribution):  # the study's own choice object
                    value = param_distribution.choices[param_distribution.choices.index(value)]
                return value
            if not self.handed_over:
                self._by_fallback.setdefault(param_name, self._why_not(param_name, param_distribution, space))
        late = self._handed_over_in.get(trial._trial_id)
        if late is not None and param_name in late[1] and late[0].get(param_name) == param_distribution:
            return late[1][param_name]
        return self.fallback.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.fallback.before_trial(study, trial)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self.fallback.after_trial(study, trial, state, values)
        new = {n: why for n, why in self._by_fallback.items() if n not in self._warned}
        if new:
            self._warned.update(new)
            listed = "; ".join(f"{n} ({why})" for n, why in sorted(new.items()))
            warnings.warn(f"MemorySampler: the fallback sampler chooses {listed}", UserWarning, stacklevel=2)

    def reseed_rng(self) -> None:
        """A fresh seed for the fallback and the model (Optuna calls this in each worker process)."""
        self.fallback.reseed_rng()
        self.seed = random.SystemRandom().randrange(2**31)
        if self.model is not None:
            self.model.seed = self.seed

    # -- the model phase -----------------------------------------------------------------

    def _proposal(
        self, study: Study, trial: FrozenTrial, asking: dict[str, BaseDistribution]
    ) -> tuple[dict | None, SearchSpace | None]:
        """The model's config for `trial` (over its space), made at the trial's first
        parameter the memory knows; (None, ...) for an enqueued trial or once the fallback
        has taken over."""
        if trial._trial_id in self._proposals:
            return self._proposals[trial._trial_id]
        if "fixed_params" in trial.system_attrs:  # enqueued: its values are the user's
            self._proposals[trial._trial_id] = (None, None)
            return None, None
        space = self._model_space(study, trial, asking)
        if space is None:  # none of the parameters seen so far is known to the memory
            return None, None
        if len(study.directions) > 1:
            config = self._from_fronts(study, trial, space)
        else:
            model = self._model_for(space)
            config = self._propose(study, trial, model) if not self.handed_over else None
            if (
                config is None and self.handed_over
            ):  # (handed over during this trial: the fallback samples it jointly)
                relative = self.fallback.infer_relative_search_space(study, trial)
                self._handed_over_in[trial._trial_id] = (
                    relative,
                    self.fallback.sample_relative(study, trial, relative),
                )
        self._proposals[trial._trial_id] = (config, space)
        return config, space

    def _model_space(
        self, study: Study, trial: FrozenTrial, asking: dict[str, BaseDistribution]
    ) -> SearchSpace | None:
        """The space the model works on: of the stored space that knows the most parameters
        the study has shown (most records among equals), the parameters it knows as the
        study does (or the study has not shown yet) that every finished trial has."""
        seen: dict[str, BaseDistribution] = {}
        shared: set[str] | None = None  # the parameters every complete trial has
        for t in study.get_trials(deepcopy=False):
            seen.update(t.distributions)  # (the newest distribution of a name counts)
            if t.state == TrialState.COMPLETE:
                shared = set(t.params) if shared is None else shared & set(t.params)
        seen.update(trial.distributions)
        seen.update(asking)
        best: tuple[tuple, SearchSpace] | None = None
        for stored, count in self._stored_spaces():
            usable = [
                p.name
                for p in stored.params
                if (p.name not in seen or same(p, seen[p.name])) and (shared is None or p.name in shared)
            ]
            known = sum(n in seen for n in usable)
            if known and (best is None or (known, count, len(usable)) > best[0]):
                best = ((known, count, len(usable)), stored.project(usable))
        return None if best is None else best[1]

    def _stored_spaces(self) -> list[tuple[SearchSpace, int]]:
        if self._stored is None:
            if self.space is not None or self.memory is None:
                self._stored = [(self.space, 1)]
            else:
                # (records written before the memory kept spaces match an explicit space only)
                specs = [
                    (spec, n)
                    for _, spec, n in self._memory().spaces(self.family, self.task_id or None)
                    if spec
                ]
                self._stored = [(SearchSpace.from_spec(spec), n) for spec, n in specs]
            if not self._stored:
                log.info(
                    "memory sampler: the memory holds no search with a space: the fallback sampler chooses "
                    "every trial"
                )
                self.handed_over = True
        return self._stored

    def _memory(self) -> MemoryStore:
        """The memory, opened once per sampler (opening reads every part: seconds for a
        million records), at its first proposal."""
        if self._store is None:
            self._store = MemoryStore(self.memory)
        return self._store

    def _model_for(self, space: SearchSpace) -> MemoryModel:
        """The memory's model of `space` (built again only when the space changes)."""
        if self.model is not None and self.model.space.params == space.params:
            return self.model
        if (
            self.past is None and self.memory is None
        ):  # (a model given alone, of another space: nothing to build from)
            self.handed_over = True
            return self.model
        if self.past is not None:
            vector = None if self.embedding is None else self.embedding[1]
            self.model = MemoryModel(
                space,
                [
                    PastTask(t.task_id, projected(t.trials, space), t.similarity, t.embedding, t.embedder)
                    for t in self.past
                ],
                self.seed,
                embedding=vector,
            )
        else:
            _, self.model = memory_model(
                self._memory(), space, self.family, self.task_id, self.seed, self.embedding
            )
        log.debug("memory sampler: %d stored tasks know %s", len(self.model.tasks), space.names)
        if not self.model.tasks:  # nothing to transfer: a plain search by the fallback
            self.handed_over = True
        return self.model

    def _propose(self, study: Study, trial: FrozenTrial, model: MemoryModel) -> dict[str, Any] | None:
        """The model's proposal for `trial`, written to the trial before it returns; None
        once the fallback takes over."""
        for attempt in itertools.count():
            configs, scores, pending, finished = self._history(study, trial, model.space)
            proposal = model.suggest(configs, scores, pending)
            cold = len(configs) >= MIN_EVIDENCE and not proposal.weights.sum()
            if finished >= self.handoff or cold:
                log.debug(
                    "memory sampler: the fallback takes over after %d trials (%s)",
                    finished,
                    "nothing transfers" if cold else "hand-off",
                )
                self.handed_over = True
                return None
            key = config_key(proposal.config)
            study._storage.set_trial_system_attr(trial._trial_id, PROPOSAL_ATTR, key)
            if not _must_yield(study, trial, key, model.space) or attempt == RETRIES:
                self.history.append(proposal)
                why = {
                    "source": f"memory model ({proposal.source})",
                    "tasks": top_tasks(
                        dict(zip((t.task_id for t in model.tasks), proposal.weights.tolist()))
                    ),
                }
                study._storage.set_trial_system_attr(trial._trial_id, WHY_ATTR, why)
                return proposal.config

    def _from_fronts(self, study: Study, trial: FrozenTrial, space: SearchSpace) -> dict[str, Any] | None:
        """A multi-objective study's next config from the stored Pareto sets (of `space`'s
        parameters, measured on the study's objectives); None once they are all taken."""
        if self._fronts is None or self._fronts[0] != space.params:  # (read once per space)
            names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
            objectives = {
                n: "max" if d == StudyDirection.MAXIMIZE else "min" for n, d in zip(names, study.directions)
            }
            if self.past is not None:
                past = [PastTask(t.task_id, projected(t.trials, space), t.similarity) for t in self.past]
            else:
                # the newest first
                past = list(reversed(past_tasks(self._memory(), space, self.family, self.task_id)))
            plan = ParetoWarmStart().plan(Start(space, past, objectives=objectives))
            self._fronts = (space.params, list(zip(plan.queued, plan.origins)))
        taken = set()
        for t in study.get_trials(deepcopy=False):
            proposed = json.loads(t.system_attrs.get(PROPOSAL_ATTR, "{}"))
            config = space.config_from(t.params) or space.config_from(proposed)
            if t.number != trial.number and config is not None:
                taken.add(config_key(config))
        for warm, origin in self._fronts[1]:
            if config_key(warm.config) not in taken:
                study._storage.set_trial_system_attr(trial._trial_id, PROPOSAL_ATTR, config_key(warm.config))
                study._storage.set_trial_system_attr(
                    trial._trial_id, WHY_ATTR, {"source": "pareto set", "task": origin}
                )
                self.history.append(Proposal(warm.config, np.zeros(0), 0.0, "pareto set"))
                return warm.config
        log.debug("memory sampler: the stored Pareto sets are all taken: the fallback takes over")
        self.handed_over = True
        return None

    def _history(self, study: Study, trial: FrozenTrial, space: SearchSpace) -> tuple[list, list, list, int]:
        """The study's evaluated configs of `space` and their scores (maximised; a failed
        trial -inf), the configs taken otherwise (running trials: their parameters or what
        was proposed for them; pruned trials), and how many trials finished."""
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        configs, scores, taken, finished = [], [], [], 0
        for t in study.get_trials(deepcopy=False):
            if t.number == trial.number or t.state == TrialState.WAITING:
                continue
            finished += t.state.is_finished()
            config = space.config_from(t.params)
            if config is None and t.state == TrialState.RUNNING:  # (what it will be: proposed, or enqueued)
                if PROPOSAL_ATTR in t.system_attrs:
                    config = space.config_from(json.loads(t.system_attrs[PROPOSAL_ATTR]))
                elif "fixed_params" in t.system_attrs:
                    config = space.config_from(t.system_attrs["fixed_params"])
            if config is None:
                continue
            if t.state == TrialState.COMPLETE and t.value is not None:
                configs.append(config)
                scores.append(sign * t.value)
            elif t.state == TrialState.FAIL:
                configs.append(config)
                scores.append(float("-inf"))
            else:  # running, or pruned
                taken.append(config)
        return configs, scores, taken, finished

    def _why_not(self, name: str, distribution: BaseDistribution, space: SearchSpace | None) -> str:
        """Why the model did not choose a parameter (for the one warning naming it)."""
        stored = [s for s, _ in self._stored or [] if s is not None and name in s.names]
        if not stored:
            return "the memory does not know it"
        if not any(same(s[name], distribution) for s in stored):
            return f"the memory knows it as {to_optuna(stored[0][name])!r}"
        return (
            "not every trial has it"
            if space is not None
            else "no stored space fits the study's other parameters"
        )
