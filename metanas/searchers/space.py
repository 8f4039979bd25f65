"""Search spaces: ordered, typed parameters that every searcher and the memory understand.

A config is a plain ``dict[str, value]``. The space validates it (naming the bad parameter),
encodes it as a fixed-length vector, and has a stable ``signature`` so that records made in
another space are never mixed in silently.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Categorical:
    name: str
    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        if len(self.choices) < 1:
            raise ValueError(f"parameter {self.name!r}: a categorical needs at least one choice")
        equal = [
            (a, b)
            for i, a in enumerate(self.choices)
            for b in self.choices[i + 1 :]
            if a == b or repr(a) == repr(b)
        ]
        if equal:  # (1 and True, or 1 and 1.0, are one value to Python: one-hot and lookups would mix them)
            raise ValueError(
                f"parameter {self.name!r}: choices must be distinct values, but {equal[0][0]!r} == "
                f"{equal[0][1]!r}"
            )

    def validate(self, value: Any) -> Any:
        if value not in self.choices:
            raise ValueError(f"parameter {self.name!r}: {value!r} is not one of {list(self.choices)}")
        return self.choices[self.choices.index(value)]  # the choice itself (1.0 given for 1: 1)

    def sample(self, rng: random.Random) -> Any:
        return rng.choice(self.choices)

    def encode(self, value: Any) -> list[float]:
        return [1.0 if c == value else 0.0 for c in self.choices]

    @property
    def width(self) -> int:
        return len(self.choices)

    def decode(self, values: Sequence[float]) -> Any:
        """The choice whose one-hot entry is largest (the first of equals)."""
        return self.choices[max(range(len(values)), key=lambda i: values[i])]

    def neighbours(self, value: Any, rng: random.Random) -> list[Any]:
        """Values one step away from `value` (for local search): every other choice."""
        return [c for c in self.choices if c != value]


@dataclass(frozen=True)
class Ordinal(Categorical):
    """An ordered list of values (a grid of learning rates, layer widths): sampled,
    validated and searched like a categorical, but encoded by position, so that
    neighbouring values are close for every model of the space."""

    def encode(self, value: Any) -> list[float]:
        index = self.choices.index(value)
        return [index / (len(self.choices) - 1) if len(self.choices) > 1 else 0.0]

    @property
    def width(self) -> int:
        return 1

    def decode(self, values: Sequence[float]) -> Any:
        """The value nearest the position (clipped to the ends)."""
        u = min(1.0, max(0.0, float(values[0])))
        return self.choices[int(round(u * (len(self.choices) - 1)))]

    def neighbours(self, value: Any, rng: random.Random) -> list[Any]:
        """The values next to `value` in the order."""
        i = self.choices.index(value)
        return [self.choices[j] for j in (i - 1, i + 1) if 0 <= j < len(self.choices)]


@dataclass(frozen=True)
class _Range:
    """A numeric range [low, high], optionally sampled and encoded on a log scale, or a
    grid low, low + step, ... (`step`, as Optuna's; `high` is then the last grid point)."""

    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None

    kind = "a number"

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"parameter {self.name!r}: low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"parameter {self.name!r}: a log-scaled range needs low > 0")
        if self.step is not None:
            if isinstance(self.step, bool) or not isinstance(self.step, (int, float)) or not self.step > 0:
                raise ValueError(
                    f"parameter {self.name!r}: step must be a positive number, got {self.step!r}"
                )
            if self.log:
                raise ValueError(
                    f"parameter {self.name!r}: a range is either log-scaled or stepped, not both"
                )
            object.__setattr__(self, "high", self._cast(_last_grid_point(self.low, self.high, self.step)))

    def _is_valid_number(self, value: Any) -> bool:
        return not isinstance(value, bool) and isinstance(value, (int, float)) and not math.isnan(value)

    def validate(self, value: Any) -> Any:
        if not self._is_valid_number(value):
            raise ValueError(f"parameter {self.name!r}: expected {self.kind}, got {value!r}")
        if not self.low <= value <= self.high:
            raise ValueError(f"parameter {self.name!r}: {value} is outside [{self.low}, {self.high}]")
        if self.step is not None:
            k = (value - self.low) / self.step
            if abs(k - round(k)) > 1e-6:
                raise ValueError(
                    f"parameter {self.name!r}: {value} is not on the grid {self.low} + k * {self.step}"
                )
            return self._on_grid(round(k))
        return self._cast(value)

    def _cast(self, value: Any) -> Any:
        return float(value)

    def _on_grid(self, k: int) -> Any:
        """The k-th grid point (one arithmetic for every caller: equal points compare equal)."""
        return self._cast(self._inside(self.low + k * self.step))

    @property
    def _points(self) -> int:
        return int(round((self.high - self.low) / self.step)) + 1

    def sample(self, rng: random.Random) -> Any:
        if self.step is not None:
            return self._on_grid(rng.randrange(self._points))
        if self.log:
            return self._from_unit(rng.random())
        return self._cast(self._inside(rng.uniform(self.low, self.high)))

    def encode(self, value: Any) -> list[float]:
        return [_unit(value, self.low, self.high, self.log)]

    @property
    def width(self) -> int:
        return 1

    def decode(self, values: Sequence[float]) -> Any:
        """The number at the position (clipped to the range)."""
        return self._from_unit(min(1.0, max(0.0, float(values[0]))))

    def neighbours(self, value: Any, rng: random.Random) -> list[Any]:
        """Four nearby values: steps of 5% of the range (on the log scale if log; at least
        one grid step) each way, and two random ones within 20%."""
        u = _unit(value, self.low, self.high, self.log)
        small = 0.05 if self.step is None else max(0.05, 1.0 / max(1, self._points - 1))
        steps = [-small, small, rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2)]
        out = {self._from_unit(min(1.0, max(0.0, u + d))) for d in steps}
        out.discard(value)
        return sorted(out)

    def _from_unit(self, u: float) -> Any:
        if self.step is not None:
            return self._on_grid(round(u * (self._points - 1)))
        if self.log:
            return self._cast(
                self._inside(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))))
            )
        return self._cast(self._inside(self.low + u * (self.high - self.low)))

    def _inside(self, value: float) -> float:
        """exp(log(high)) and low + 1 * (high - low) can round past the bound they mean:
        every value this range makes is clipped to it, so it always validates."""
        return min(self.high, max(self.low, value))


@dataclass(frozen=True)
class Int(_Range):
    low: int
    high: int

    kind = "an integer"

    def __post_init__(self) -> None:
        if type(self.step) is int and self.step == 1:
            object.__setattr__(self, "step", None)  # (step 1 is every integer: the plain range)
        elif self.step is not None and type(self.step) is not int:
            raise ValueError(
                f"parameter {self.name!r}: an integer step must be a positive integer, got {self.step!r}"
            )
        super().__post_init__()

    def _is_valid_number(self, value: Any) -> bool:
        return super()._is_valid_number(value) and int(value) == value

    def _cast(self, value: Any) -> int:
        return int(round(value))

    def sample(self, rng: random.Random) -> int:
        return super().sample(rng) if self.log or self.step else rng.randint(self.low, self.high)


@dataclass(frozen=True)
class Float(_Range):
    low: float
    high: float


Param = Categorical | Int | Float  # (an Ordinal is a Categorical)


def choices_param(name: str, values: Sequence[Any]) -> Categorical:
    """A list of choices as a parameter: more than two numbers in increasing order are a grid
    (learning rates, widths: an `Ordinal`, encoded by position), anything else labels."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric and len(values) > 2 and list(values) == sorted(values):
        return Ordinal(name, tuple(values))
    return Categorical(name, tuple(values))


def _last_grid_point(low: float, high: float, step: float) -> float:
    """The largest low + k * step <= high, in decimal arithmetic as Optuna computes it (so
    a stepped range and Optuna's distribution of it agree: -10.2..10.2 by 0.1 ends at 10.2)."""
    d_low, d_high, d_step = (decimal.Decimal(str(v)) for v in (low, high, step))
    span = d_high - d_low
    return high if span % d_step == 0 else float((span // d_step) * d_step + d_low)


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

    def config_from(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """This space's parameters of `params` (which may have more) as a valid config, or
        None when one is missing or invalid."""
        try:
            return self.validate({n: params[n] for n in self.names})
        except (KeyError, ValueError, TypeError):
            return None

    def sample(self, rng: random.Random | int | None = None) -> dict[str, Any]:
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        return {p.name: p.sample(rng) for p in self.params}

    def neighbours(
        self, config: dict[str, Any], rng: random.Random | int | None = None
    ) -> list[dict[str, Any]]:
        """Configs that differ from `config` in one parameter, by one step (local search)."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        config = self.validate(config)
        return [{**config, p.name: v} for p in self.params for v in p.neighbours(config[p.name], rng)]

    @property
    def encoded_dims(self) -> int:
        """The length of `encode`'s vectors."""
        return sum(p.width for p in self.params)

    def encode(self, config: dict[str, Any]) -> list[float]:
        """A fixed-length vector: one-hot for categoricals, [0, 1] for numbers."""
        config = self.validate(config)
        return [x for p in self.params for x in p.encode(config[p.name])]

    def decode(self, vector: Sequence[float]) -> dict[str, Any]:
        """The config a vector of `encode`'s length stands for: `decode(encode(c))` is `c`
        (numbers to float rounding), and any other vector gives the nearest valid config."""
        if len(vector) != self.encoded_dims:
            raise ValueError(f"decode: expected a vector of {self.encoded_dims} numbers, got {len(vector)}")
        out, i = {}, 0
        for p in self.params:
            out[p.name] = p.decode(vector[i : i + p.width])
            i += p.width
        return out

    @property
    def signature(self) -> str:
        """Stable hash of the parameter definitions (not of the space's display name)."""
        # (a range without a step hashes as before steps existed)
        spec = [
            [type(p).__name__, *(_jsonable(v) for k, v in vars(p).items() if not (k == "step" and v is None))]
            for p in self.params
        ]
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def to_spec(self) -> list[dict[str, Any]]:
        """The space as JSON-ready data (what a memory record keeps of it)."""
        return [param_spec(p) for p in self.params]

    @classmethod
    def from_spec(cls, spec: Sequence[dict[str, Any]], name: str = "space") -> SearchSpace:
        return cls(tuple(param_from_spec(d) for d in spec), name)

    def project(self, names: Sequence[str]) -> SearchSpace:
        """The space of these parameters only, in this space's order."""
        keep = set(names)
        return SearchSpace(tuple(p for p in self.params if p.name in keep), self.name)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def config_key(config: dict[str, Any]) -> str:
    """One hashable identity per config, used wherever configs are deduplicated or matched
    (warm starts, stored trials), so two places never disagree on what 'the same' means."""
    return json.dumps(config, sort_keys=True, default=str)


_KINDS = {"categorical": Categorical, "ordinal": Ordinal, "int": Int, "float": Float}


def param_spec(p: Param) -> dict[str, Any]:
    """One parameter as JSON-ready data: its kind and its definition."""
    kind = next(k for k, cls in _KINDS.items() if type(p) is cls)
    if isinstance(p, Categorical):
        return {"kind": kind, "name": p.name, "choices": list(p.choices)}
    out = {"kind": kind, "name": p.name, "low": p.low, "high": p.high, "log": p.log}
    return out if p.step is None else {**out, "step": p.step}


def param_from_spec(d: dict[str, Any]) -> Param:
    cls = _KINDS.get(d.get("kind"))
    if cls is None:
        raise ValueError(f"parameter spec: unknown kind {d.get('kind')!r}")
    if issubclass(cls, Categorical):
        return cls(d["name"], tuple(d["choices"]))
    return cls(d["name"], d["low"], d["high"], bool(d.get("log", False)), d.get("step"))
