"""Pareto fronts of points scored on several objectives, each maximised or minimised, and
bounds on those objectives (the worst acceptable value of each)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

DIRECTIONS = ("max", "min")


def _signed(point: Mapping[str, float], objectives: Mapping[str, str]) -> tuple[float, ...]:
    """The point with every objective turned into one to maximise."""
    return tuple(point[k] if d == "max" else -point[k] for k, d in objectives.items())


def dominates(a: Mapping[str, float], b: Mapping[str, float], objectives: Mapping[str, str]) -> bool:
    """a is at least as good as b on every objective and better on one."""
    sa, sb = _signed(a, objectives), _signed(b, objectives)
    return all(x >= y for x, y in zip(sa, sb)) and any(x > y for x, y in zip(sa, sb))


def pareto_front(points: Sequence[Mapping[str, float]], objectives: Mapping[str, str]) -> list[int]:
    """Indices of the points no other point dominates, in input order. Equal points are all
    kept. `objectives`: name -> 'max' or 'min'."""
    bad = {k: d for k, d in objectives.items() if d not in DIRECTIONS}
    if bad or not objectives:
        raise ValueError(f"objectives: expected name -> 'max' or 'min', got {dict(objectives)}")
    return [i for i, p in enumerate(points) if not any(dominates(q, p, objectives) for q in points)]


def feasible(
    metrics: Mapping[str, float], objectives: Mapping[str, str], constraints: Mapping[str, float] | None
) -> bool:
    """Within every bound: at most it for a minimised metric, at least it for a maximised one."""
    return all(
        violation(metrics, objectives, name, bound) <= 0 for name, bound in (constraints or {}).items()
    )


def violation(metrics: Mapping[str, float], objectives: Mapping[str, str], name: str, bound: float) -> float:
    """How far past its bound a metric is (<= 0: within), Optuna's constraint convention."""
    return metrics[name] - bound if objectives[name] == "min" else bound - metrics[name]
