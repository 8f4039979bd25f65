"""Search spaces: ordered, typed parameters that every searcher and the memory understand.

A config is a plain ``dict[str, value]``. The space validates it (naming the bad parameter),
encodes it as a fixed-length vector, and has a stable ``signature`` so that records made in
another space are never mixed in silently.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any, Sequence, Union


@dataclass(frozen=True)
class Categorical:
    name: str
    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        if len(self.choices) < 1:
            raise ValueError(f"parameter {self.name!r}: a categorical needs at least one choice")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"parameter {self.name!r}: choices must be distinct, got {self.choices}")

    def validate(self, value: Any) -> Any:
        if value not in self.choices:
            raise ValueError(
                f"parameter {self.name!r}: {value!r} is not one of {list(self.choices)}"
            )
        return value

    def sample(self, rng: random.Random) -> Any:
        return rng.choice(self.choices)

    def encode(self, value: Any) -> list[float]:
        return [1.0 if c == value else 0.0 for c in self.choices]


@dataclass(frozen=True)
class Int:
    name: str
    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"parameter {self.name!r}: low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"parameter {self.name!r}: a log-scaled range needs low > 0")

    def validate(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ValueError(f"parameter {self.name!r}: expected an integer, got {value!r}")
        if not self.low <= value <= self.high:
            raise ValueError(f"parameter {self.name!r}: {value} is outside [{self.low}, {self.high}]")
        return int(value)

    def sample(self, rng: random.Random) -> int:
        if self.log:
            return int(round(math.exp(rng.uniform(math.log(self.low), math.log(self.high)))))
        return rng.randint(self.low, self.high)

    def encode(self, value: Any) -> list[float]:
        return [_unit(value, self.low, self.high, self.log)]


@dataclass(frozen=True)
class Float:
    name: str
    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"parameter {self.name!r}: low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"parameter {self.name!r}: a log-scaled range needs low > 0")

    def validate(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ValueError(f"parameter {self.name!r}: expected a number, got {value!r}")
        if not self.low <= value <= self.high:
            raise ValueError(f"parameter {self.name!r}: {value} is outside [{self.low}, {self.high}]")
        return float(value)

    def sample(self, rng: random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)

    def encode(self, value: Any) -> list[float]:
        return [_unit(value, self.low, self.high, self.log)]


Param = Union[Categorical, Int, Float]


def _unit(value: float, low: float, high: float, log: bool) -> float:
    if high == low:
        return 0.0
    if log:
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return (value - low) / (high - low)


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of parameters. Immutable; build a new one to change it."""

    params: tuple[Param, ...]
    name: str = "space"
    _index: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        names = [p.name for p in self.params]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"search space {self.name!r}: duplicate parameter names {dupes}")
        object.__setattr__(self, "_index", {p.name: p for p in self.params})

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def __getitem__(self, name: str) -> Param:
        return self._index[name]

    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        """Return a normalised copy of ``config``; raise ValueError naming the bad parameter."""
        if not isinstance(config, dict):
            raise TypeError(f"a config must be a dict, got {type(config).__name__}")
        missing = [n for n in self.names if n not in config]
        unknown = [k for k in config if k not in self._index]
        if missing:
            raise ValueError(f"config is missing parameters {missing} of space {self.name!r}")
        if unknown:
            raise ValueError(f"config has unknown parameters {unknown} for space {self.name!r}")
        return {p.name: p.validate(config[p.name]) for p in self.params}

    def sample(self, rng: random.Random | int | None = None) -> dict[str, Any]:
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        return {p.name: p.sample(rng) for p in self.params}

    def encode(self, config: dict[str, Any]) -> list[float]:
        """A fixed-length vector: one-hot for categoricals, [0, 1] for numbers."""
        config = self.validate(config)
        return [x for p in self.params for x in p.encode(config[p.name])]

    @property
    def signature(self) -> str:
        """Stable hash of the parameter definitions (not of the space's display name)."""
        spec = [[type(p).__name__, *(_jsonable(v) for v in vars(p).values())] for p in self.params]
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def to_optuna(self) -> dict[str, Any]:
        """Optuna distributions, one per parameter (imports optuna lazily)."""
        import optuna.distributions as od

        out: dict[str, Any] = {}
        for p in self.params:
            if isinstance(p, Categorical):
                out[p.name] = od.CategoricalDistribution(list(p.choices))
            elif isinstance(p, Int):
                out[p.name] = od.IntDistribution(p.low, p.high, log=p.log)
            else:
                out[p.name] = od.FloatDistribution(p.low, p.high, log=p.log)
        return out

    def to_tune(self) -> dict[str, Any]:
        """A Ray Tune param space (imports ray.tune lazily)."""
        from ray import tune

        out: dict[str, Any] = {}
        for p in self.params:
            if isinstance(p, Categorical):
                out[p.name] = tune.choice(list(p.choices))
            elif isinstance(p, Int):
                out[p.name] = (tune.lograndint if p.log else tune.randint)(p.low, p.high + 1)
            else:
                out[p.name] = (tune.loguniform if p.log else tune.uniform)(p.low, p.high)
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def categorical_space(name: str, choices_by_param: Sequence[tuple[str, Sequence[Any]]]) -> SearchSpace:
    return SearchSpace(tuple(Categorical(n, tuple(c)) for n, c in choices_by_param), name=name)
