"""A small Gaussian process over encoded configs (numpy only): the model of one task's
own evaluations, stored or new. Targets are normalised within the task, so models of tasks
on different scales can be compared and mixed."""

from __future__ import annotations

import numpy as np

LENGTHSCALES = (0.25, 0.5, 1.0, 2.0)  # x sqrt(dims): picked per fit by marginal likelihood
NOISE = 1e-2


def rank_normalise(y: np.ndarray) -> np.ndarray:
    """Each value's rank among `y`, scaled to [0, 1] (1 = best); ties share their mean rank."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) < 2:
        return np.full(len(y), 0.5)
    order = np.argsort(y, kind="stable")
    _, first, counts = np.unique(y[order], return_index=True, return_counts=True)
    ranks = np.empty(len(y))
    ranks[order] = np.repeat(first + (counts - 1) / 2.0, counts)  # tied values share their mean rank
    return ranks / (len(y) - 1)


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0.0)


class GP:
    """RBF-kernel GP regression with a constant mean. `fit` is called once per data set;
    `predict` and `loo_mean` read it."""

    def __init__(self, X: np.ndarray, y: np.ndarray, prior_mean: np.ndarray | None = None) -> None:
        """`prior_mean`, if given, is the prior's value at each training point (the GP then
        models the residual; pass the prior at the candidates to `predict`)."""
        self.X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self.prior = np.zeros(len(y)) if prior_mean is None else np.asarray(prior_mean, dtype=np.float64)
        resid = y - self.prior
        self.mean = float(resid.mean()) if len(resid) else 0.0
        self.scale = float(resid.std()) or 1.0 if len(resid) > 1 else 1.0
        self.r = (resid - self.mean) / self.scale
        d2 = _sqdist(self.X, self.X)
        best = None
        for ls in LENGTHSCALES:
            ls = ls * np.sqrt(max(1, self.X.shape[1]))
            K = np.exp(-0.5 * d2 / ls**2) + NOISE * np.eye(len(y))
            L = np.linalg.cholesky(K)
            alpha = np.linalg.solve(L.T, np.linalg.solve(L, self.r))
            nll = 0.5 * self.r @ alpha + np.log(np.diag(L)).sum()
            if best is None or nll < best[0]:
                best = (nll, ls, L, alpha)
        _, self.lengthscale, self.L, self.alpha = best

    def predict(self, Xc: np.ndarray, prior_mean: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation) at the candidates."""
        Ks = np.exp(-0.5 * _sqdist(np.asarray(Xc, dtype=np.float64), self.X) / self.lengthscale**2)
        mu = Ks @ self.alpha
        v = np.linalg.solve(self.L, Ks.T)
        var = np.maximum(1.0 + NOISE - (v * v).sum(0), 1e-12)
        base = 0.0 if prior_mean is None else np.asarray(prior_mean, dtype=np.float64)
        return base + self.mean + self.scale * mu, self.scale * np.sqrt(var)

    def loo_mean(self) -> np.ndarray:
        """Leave-one-out predictions at the training points (closed form)."""
        Kinv = np.linalg.solve(self.L.T, np.linalg.solve(self.L, np.eye(len(self.r))))
        loo = self.r - self.alpha / np.diag(Kinv)
        return self.prior + self.mean + self.scale * loo
