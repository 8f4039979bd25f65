"""The pieces of transfer during a search, as plain numpy functions: the greedy portfolio,
how stored tasks are weighted by the new task's evaluations (the ranking-loss vote of RGPE,
Feurer et al. 2018), and how a prior is fitted to a task's scale."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BOOTSTRAPS = 64
MIN_EVIDENCE = (
    3  # evaluations before stored tasks are weighted by how they rank them (measured: 3 over 2, 5, 8)
)
MIN_CHANCE_TEST = 10  # evaluations before a task can be ruled no better than chance


def greedy_portfolio(
    F: np.ndarray, n: int, taken: Sequence[int] = (), weights: np.ndarray | None = None
) -> list[int]:
    """Columns of F (stored tasks x candidates, predicted normalised rank) chosen one by one
    to maximise the (weighted) sum over tasks of the best chosen prediction (auto-sklearn
    2.0's portfolio, scored with the surrogate). `taken` are already in the portfolio."""
    chosen = list(taken)
    w = np.ones(len(F)) if weights is None else np.asarray(weights, dtype=np.float64)
    best = F[:, chosen].max(1) if chosen else np.zeros(len(F))
    for _ in range(n):
        gain = (w[:, None] * np.maximum(F - best[:, None], 0.0)).sum(0)
        gain[chosen] = -1.0
        pick = int(np.argmax(gain))
        chosen.append(pick)
        best = np.maximum(best, F[:, pick])
    return chosen[len(taken) :]


def misranked(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, n) pairs a predictor orders against the observed scores (ties in y ignored)."""
    return ((pred[:, None] < pred[None, :]) != (y[:, None] < y[None, :])) & (y[:, None] != y[None, :])


def task_weights(
    stored_pred: np.ndarray,
    y: np.ndarray,
    seed: int = 0,
    min_evidence: int = MIN_EVIDENCE,
    prior: np.ndarray | None = None,
) -> np.ndarray:
    """How much each stored task is trusted on the new task (sums to 1, or to 0 when none
    ranks the new task's evaluations better than chance: then the search is a cold one).

    stored_pred: (tasks, n) each stored task's predictions at the n evaluated configs. Each
    bootstrap resample of the evaluations votes for the task(s) that misrank the fewest
    pairs; a task's weight is its share of the votes. Before `min_evidence` evaluations
    the vote means little: the tasks keep their `prior` weights (default: all the same)."""
    T, n = stored_pred.shape
    if T == 0:
        return np.zeros(0)
    if n < min_evidence:
        return np.full(T, 1.0 / T) if prior is None else np.asarray(prior, dtype=np.float64)
    wrong = np.stack([misranked(np.asarray(p), y) for p in stored_pred])  # (tasks, n, n)
    valid = y[:, None] != y[None, :]
    idx = np.random.default_rng(seed).integers(n, size=(BOOTSTRAPS, n))
    losses = wrong[:, idx[:, :, None], idx[:, None, :]].sum((-1, -2))  # (tasks, bootstraps)
    pairs = np.maximum(valid[idx[:, :, None], idx[:, None, :]].sum((-1, -2)), 1)
    winners = losses == losses.min(0, keepdims=True)
    w = (winners / winners.sum(0, keepdims=True)).mean(1)
    if n >= MIN_CHANCE_TEST:  # (a few good configs are too alike to judge a task by)
        w[np.median(losses / pairs, axis=1) >= 0.5] = 0.0  # no better than chance
    return w / w.sum() if w.sum() > 0 else w


def calibrate(prior: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """y ~ a * prior + b by least squares, with a >= 0 (a prior that ranks the evaluations
    the wrong way is switched off, not inverted)."""
    if len(y) < 2 or np.std(prior) < 1e-9:
        return 0.0, float(np.mean(y)) if len(y) else 0.0
    a, b = np.polyfit(prior, y, 1)
    if a <= 0:
        return 0.0, float(np.mean(y))
    return float(a), float(b)


def similarity_weights(stored: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Prior weights of stored tasks (rows of `stored`, standardised embeddings) for a new
    task embedded as `new`: a Gaussian kernel of their distance, its width the median
    distance (so the weights adapt to the embedder's scale); sums to 1."""
    d2 = ((np.asarray(stored, dtype=np.float64) - np.asarray(new, dtype=np.float64)) ** 2).sum(1)
    width = float(np.median(d2)) or 1.0
    w = np.exp(-d2 / width)
    return w / w.sum()
