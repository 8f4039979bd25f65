"""Summary statistics every report uses."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def mean_ci95(values: list[float]) -> dict[str, float]:
    """Mean and the half-width of its 95% confidence interval (normal approximation,
    fine for the hundreds of tasks a meta-test uses)."""
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) == 0:
        return {"mean": math.nan, "ci95": math.nan}
    half = 1.96 * arr.std(ddof=1) / math.sqrt(len(arr)) if len(arr) > 1 else math.nan
    return {"mean": round(float(arr.mean()), 4), "ci95": round(float(half), 4)}


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Rank correlation of two equally long score lists (0 when either is constant)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if np.std(ra) == 0 or np.std(rb) == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])
