"""Transfer during a search: which config a new task should evaluate next, given what the
memory's stored tasks say about every candidate and what the new task has shown so far.

- Every stored task t is a predictor f_t: the cross-task surrogate conditioned on t's
  embedding (its normalised rank in t, 1 = t's best); where t evaluated a config itself,
  its own result replaces the prediction.
- Until the new task has a few evaluations, the next config is the next member of the
  greedy portfolio: the one that most raises the expected best over the stored tasks
  (weighted as below), given what was already evaluated (the transfer acquisition of
  Wistuba et al. 2018). No fixed number of evaluations goes to other tasks' winners.
- Stored tasks start with equal weights or, when the new task's embedding is known, with
  weights by how close their embeddings are (`acquisition.similarity_weights`). As
  evaluations arrive, they are weighted by how well they rank them
  (`acquisition.task_weights`); a task no better than chance gets weight 0.
- Then the new task's own model takes over: a GP on its evaluations whose prior mean is
  the weighted stored tasks' prediction, fitted to its scale; an upper confidence bound
  picks the next config. When no stored task is trusted the prior is flat: a cold search
  (and `MemorySampler` hands over to TPE).
A local search through one-parameter moves refines the best candidates, so narrow optima
of large spaces are not lost to a sample.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metanas.memory.acquisition import calibrate, greedy_portfolio, similarity_weights, task_weights
from metanas.memory.cross_task import STEPS, CrossTaskSurrogate, SurrogateFile, TaskData, fingerprint
from metanas.memory.gp import GP, rank_normalise
from metanas.memory.knn import finite_trials
from metanas.memory.records import PastTask
from metanas.searchers.space import Categorical, SearchSpace, config_key

MIN_OWN = 6  # evaluations before the new task's own model takes over (measured: 6 over 4 and 8-11)
CANDIDATES = 4096  # the whole space below this many configs, a sample of this size above
MODEL_TASKS = 64  # stored tasks a search weighs: the newest, or the nearest by embedding
# Stored-task x candidate predictions made up front. With many stored tasks the sample of
# candidates shrinks to fit (never below MIN_CANDIDATES; the local search refines beyond
# it), so planning costs the same at any memory size; the benchmarks' tables stay far below.
PREDICTIONS = 1 << 15
MIN_CANDIDATES = 512
STALE = 0.1  # a kept surrogate serves while at most this share of the tasks is new to it
LOCAL_STARTS = 5  # best candidates a local search starts from (plus the best evaluated configs)
LOCAL_ROUNDS = 4
# The portfolio step counts gains on predicted rank ** TOP_EMPHASIS: on the rank scale a
# config at 0.97 looks nearly as good as a task's best, on this scale it does not
# (measured, leave-one-task-out, 2 seeds: HPOBench regret@10 0.087 -> 0.073; HPOlib equal).
TOP_EMPHASIS = 4
# The own model picks by mean + UCB_BETA * sd: expected improvement wandered far from the
# evidence with 6-20 evaluations (picks of regret 0.4-1.5 on HPOBench).
UCB_BETA = 0.5


@dataclass
class Proposal:
    config: dict[str, Any]
    weights: np.ndarray  # of the stored tasks (all 0: nothing transfers, a cold search)
    acquisition: float
    source: str  # "portfolio" (stored tasks only) or "own model"


def candidate_configs(
    space: SearchSpace, limit: int, seed: int, extra: Sequence[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """The whole space when it is a grid of at most `limit` configs, otherwise `limit`
    random configs plus `extra` (configs the memory has seen)."""
    if (
        all(isinstance(p, Categorical) for p in space.params)
        and math.prod(len(p.choices) for p in space.params) <= limit
    ):
        return [
            dict(zip(space.names, combo)) for combo in itertools.product(*(p.choices for p in space.params))
        ]
    out: dict[str, dict[str, Any]] = {}
    for config in extra:
        try:
            config = space.validate(config)
        except (ValueError, TypeError):
            continue
        out.setdefault(config_key(config), config)
    rng = random.Random(seed)
    for _ in range(limit):
        config = space.sample(rng)
        out.setdefault(config_key(config), config)
    return list(out.values())


def seen_configs(past: Sequence[PastTask], limit: int) -> list[dict[str, Any]]:
    """Configs the stored tasks evaluated: all of them when they are at most `limit`,
    otherwise each task's best few."""
    trials = [finite_trials(task.trials) for task in past]
    if sum(map(len, trials)) > limit:
        per_task = max(1, limit // max(1, len(past)))
        trials = [sorted(ts, key=lambda t: -t["score"])[:per_task] for ts in trials]
    return [t["config"] for ts in trials for t in ts]


def task_data(space: SearchSpace, task: PastTask) -> TaskData | None:
    """A stored task as the surrogate sees it; None when it has under two usable trials."""
    configs, scores, keys = [], [], []
    for t in finite_trials(task.trials):
        try:
            config = space.validate(t["config"])
        except (ValueError, TypeError):
            continue
        configs.append(space.encode(config))
        scores.append(t["score"])
        keys.append(config_key(config))
    if len(scores) < 2:
        return None
    embedding = None if task.embedding is None else np.asarray(task.embedding, dtype=np.float32)
    return TaskData(
        task.task_id,
        np.asarray(configs, dtype=np.float32),
        rank_normalise(np.asarray(scores)),
        embedding,
        tuple(keys),
    )


def _with_usable_embeddings(tasks: Sequence[TaskData]) -> tuple[list[TaskData], int]:
    """The surrogate reads embeddings only when every task has one of the same length."""
    dims = {None if t.embedding is None else len(t.embedding) for t in tasks}
    if len(dims) == 1 and None not in dims:
        return list(tasks), dims.pop()
    return [TaskData(t.task_id, t.X, t.ranks, None, t.keys) for t in tasks], 0


def train_surrogate(
    space: SearchSpace,
    tasks: Sequence[TaskData],
    seed: int = 0,
    directory: str | Path | None = None,
    embedder: str = "",
    more: Callable[[], Sequence[TaskData]] | None = None,
) -> CrossTaskSurrogate:
    """The cross-task surrogate of `tasks`. With a memory `directory` it is kept there: used
    as it is while at most `STALE` of the tasks are new to it (it reads a task's embedding,
    so it predicts for tasks it has not trained on, and their own results count where they
    have them), updated incrementally beyond that, trained afresh when there is none of
    this shape. A memory that grows one search at a time pays one update per 10%. `more`:
    further stored tasks to train on whenever it trains (a step costs the same for any
    number of tasks), so one update covers the memory's recent tasks, not only these."""
    tasks, dims = _with_usable_embeddings(tasks)
    config_dims = space.encoded_dims
    file = None
    if directory is not None:
        name = hashlib.sha256(f"{space.signature}\0{embedder}".encode()).hexdigest()[:16]
        file = SurrogateFile(Path(directory) / "models" / f"surrogate-{name}")
        saved = file.load(space.signature)
        if saved is not None and (saved.config_dims, saved.embedding_dims) == (config_dims, dims):
            new = sum(t.task_id not in saved.task_ids for t in tasks)
            if saved.fingerprint == fingerprint(tasks) or new <= STALE * len(tasks):
                return saved
            # enough new records: an incremental update
            model = saved.fit(_with_more(tasks, more, dims), steps=STEPS // 3)
            file.save(model, space.signature, embedder)
            return model
    model = CrossTaskSurrogate(config_dims, dims, seed).fit(_with_more(tasks, more, dims))
    if file is not None:
        file.save(model, space.signature, embedder)
    return model


def _with_more(
    tasks: list[TaskData], more: Callable[[], Sequence[TaskData]] | None, dims: int
) -> list[TaskData]:
    """`tasks` and, where their embeddings are of the same kind, `more` (each task once)."""
    if more is None:
        return tasks
    known = {t.task_id for t in tasks}
    extra = [t for t in more() if t.task_id not in known]
    merged, merged_dims = _with_usable_embeddings([*tasks, *extra])
    return merged if merged_dims == dims else tasks


class MemoryModel:
    """The memory of one space, ready for a search on a new task: the cross-task surrogate,
    the stored tasks, and every stored task's prediction at every candidate. Built once per
    search (or proposal); `suggest` is called before each evaluation."""

    def __init__(
        self,
        space: SearchSpace,
        past: Sequence[PastTask],
        seed: int = 0,
        surrogate: CrossTaskSurrogate | None = None,
        directory: str | Path | None = None,
        embedder: str = "",
        embedding: Sequence[float] | None = None,
        more: Callable[[], Sequence[PastTask]] | None = None,
    ) -> None:
        """`embedding`: the new task's, by the stored tasks' embedder, when it is known.
        `more`: further stored tasks the surrogate trains on whenever it trains."""
        self.space = space
        self.seed = seed
        usable = sorted(
            (d for d in (task_data(space, t) for t in past) if d is not None), key=lambda d: d.task_id
        )
        self.tasks, _ = _with_usable_embeddings(usable)  # (sorted: the order of the records never matters)
        if surrogate is None and self.tasks:
            extra = (
                None
                if more is None
                else lambda: [d for d in (task_data(space, t) for t in more()) if d is not None]
            )
            surrogate = train_surrogate(space, self.tasks, seed, directory, embedder, extra)
        self.surrogate = surrogate
        limit = min(CANDIDATES, max(MIN_CANDIDATES, PREDICTIONS // max(1, len(self.tasks))))
        self.candidates = candidate_configs(space, limit, seed, seen_configs(past, limit // 2))
        self.keys = [config_key(c) for c in self.candidates]
        self.width = space.encoded_dims
        self.X = self.encode(self.candidates)
        self.F = self.predict_stored(self.X)
        # Where a stored task evaluated a candidate, its own result beats any prediction.
        where = {k: i for i, k in enumerate(self.keys)}
        for row, task in enumerate(self.tasks):
            for key, rank in zip(task.keys, task.ranks):
                if key in where:
                    self.F[row, where[key]] = rank
        self.embedding = None if embedding is None else np.asarray(embedding, dtype=np.float32)
        self.prior_weights = self._prior_weights()

    def _prior_weights(self) -> np.ndarray:
        """The stored tasks' weights before the new task has shown anything: by embedding
        distance when the new task's embedding is known, otherwise all the same."""
        T = len(self.tasks)
        if self.embedding is None or T == 0:
            return np.full(T, 1.0 / max(T, 1))
        dims = self.surrogate.embedding_dims
        if dims == 0:
            raise ValueError(
                "embedding: the memory's records of this space carry no embeddings (or several kinds) to "
                "compare it with"
            )
        if len(self.embedding) != dims:
            raise ValueError(
                f"embedding: has {len(self.embedding)} dimensions, the memory's records of this space have "
                f"{dims}"
            )

        def scale(e: Sequence[float]) -> np.ndarray:
            return (np.asarray(e, dtype=np.float32) - self.surrogate.emb_mean) / self.surrogate.emb_std

        return similarity_weights(np.stack([scale(t.embedding) for t in self.tasks]), scale(self.embedding))

    def encode(self, configs: Sequence[dict[str, Any]]) -> np.ndarray:
        return np.asarray([self.space.encode(c) for c in configs], dtype=np.float32).reshape(
            len(configs), self.width
        )

    def predict_stored(self, X: np.ndarray) -> np.ndarray:
        """(stored tasks, len(X)): how each stored task would rank these configs."""
        if not self.tasks:
            return np.zeros((0, len(X)))
        return self.surrogate.predict_tasks(X, [t.embedding for t in self.tasks])

    def portfolio(self, n: int) -> list[tuple[dict[str, Any], float, float]]:
        """The zero-shot proposal: `n` configs chosen greedily for the expected best over the
        stored tasks (weighted by similarity when the new task's embedding is known), each
        with the surrogate's predicted normalised rank on the new task and its uncertainty
        (the ensemble's spread)."""
        if not self.tasks:
            raise ValueError(
                "the memory holds no usable search of this space (two or more scored trials): nothing to "
                "propose from"
            )
        picks = greedy_portfolio(self.F, min(n, len(self.candidates)), weights=self.prior_weights)
        mean, std = self.surrogate.predict(self.X[picks], self.embedding)
        return [(self.candidates[i], float(m), float(s)) for i, m, s in zip(picks, mean, std)]

    def suggest(
        self,
        configs: Sequence[dict[str, Any]],
        scores: Sequence[float],
        pending: Sequence[dict[str, Any]] = (),
    ) -> Proposal:
        """The next config for the new task, given its evaluations so far (a failed one has a
        score of -inf) and the configs being evaluated now."""
        ok = [i for i, s in enumerate(scores) if np.isfinite(s)]
        X_obs = self.encode([configs[i] for i in ok])
        y_obs = np.asarray([scores[i] for i in ok], dtype=np.float64)
        T = len(self.tasks)
        at_obs = self.predict_stored(X_obs)
        w = task_weights(at_obs, y_obs, self.seed + len(ok), prior=self.prior_weights)
        if len(ok) >= MIN_OWN or (T == 0 and len(ok) >= 2):
            acquisition, source = self._own_model(X_obs, rank_normalise(y_obs), at_obs, w), "own model"
        else:
            acquisition, source = self._portfolio_step(at_obs, w), "portfolio"
        taken = {config_key(c) for c in list(configs) + list(pending)}
        if T == 0 and source == "portfolio":  # nothing to go on yet: explore
            free = [c for c, k in zip(self.candidates, self.keys) if k not in taken] or [
                self.space.sample(self.seed + len(taken))
            ]
            return Proposal(random.Random(self.seed + len(taken)).choice(free), w, 0.0, "random")
        score = acquisition(self.X, self.F)
        score[[i for i, k in enumerate(self.keys) if k in taken]] = -np.inf
        starts = [self.candidates[i] for i in np.argsort(-score)[:LOCAL_STARTS]]
        starts += [configs[ok[j]] for j in np.argsort(-y_obs)[:3]]  # and the best evaluated ones
        value, config = self._local_search(
            starts, acquisition, taken, (float(np.max(score)), self.candidates[int(np.argmax(score))])
        )
        return Proposal(config, w, value, source)

    def _portfolio_step(self, at_obs: np.ndarray, w: np.ndarray) -> Any:
        """How much a config would raise each stored task's best so far, weighted."""
        floor = at_obs.max(1) if at_obs.shape[1] else np.zeros(len(w))
        w = w if w.sum() > 0 else np.full(len(w), 1.0 / max(1, len(w)))

        def acquisition(X: np.ndarray, F: np.ndarray | None = None) -> np.ndarray:
            F = self.predict_stored(X) if F is None else F
            gain = (w[:, None] * np.maximum(F**TOP_EMPHASIS - floor[:, None] ** TOP_EMPHASIS, 0.0)).sum(0)
            if not np.any(gain > 0):  # nothing predicted to improve: the weighted best guess
                gain = (w[:, None] * F).sum(0) + 1e-9
            return gain

        return acquisition

    def _own_model(self, X_obs: np.ndarray, y: np.ndarray, at_obs: np.ndarray, w: np.ndarray) -> Any:
        """An upper confidence bound under a GP of the new task whose prior mean is the
        weighted stored tasks' prediction, scaled to fit the evaluations."""
        prior_obs = w @ at_obs if len(w) else np.zeros(len(y))
        a, b = calibrate(prior_obs, y)
        own = GP(X_obs, y, prior_mean=a * prior_obs + b)

        def acquisition(X: np.ndarray, F: np.ndarray | None = None) -> np.ndarray:
            prior = (
                a * (w @ (self.predict_stored(X) if F is None else F)) + b if len(w) else np.full(len(X), b)
            )
            mu, sigma = own.predict(X, prior_mean=prior)
            return mu + UCB_BETA * sigma

        return acquisition

    def _local_search(
        self, starts: list, acquisition: Any, taken: set, best: tuple[float, dict]
    ) -> tuple[float, dict]:
        """Hill-climb the acquisition from every start at once through one-parameter moves."""
        rng = random.Random(self.seed)
        current = [(-np.inf, c) for c in starts]
        for _ in range(LOCAL_ROUNDS):
            moves, owner = [], []
            for k, (_, config) in enumerate(current):
                for move in self.space.neighbours(config, rng):
                    if config_key(move) not in taken:
                        moves.append(move)
                        owner.append(k)
            if not moves:
                break
            scores = acquisition(self.encode(moves))
            improved = False
            for k in range(len(current)):
                mine = [j for j, o in enumerate(owner) if o == k]
                j = max(mine, key=lambda j: scores[j]) if mine else None
                if j is not None and scores[j] > current[k][0]:
                    current[k] = (float(scores[j]), moves[j])
                    improved = True
            if not improved:
                break
        return max([best] + current, key=lambda sc: sc[0])
