"""Hypothesis strategies for search spaces and their configs: floats and ints, log-scaled
or not, tiny and huge ranges, ordinals and categoricals of mixed types."""

from __future__ import annotations

import math
import string

from hypothesis import strategies as st

from metanas.searchers.space import Categorical, Float, Int, Ordinal, SearchSpace

NAMES = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=5)


@st.composite
def floats(draw, name: str) -> Float:
    if draw(st.booleans()):  # log-scaled: from 1e-12 to 1e12, spans of up to 12 decades
        low = 10.0 ** draw(st.floats(-12, 6))
        high = low * 10.0 ** draw(st.sampled_from([0.0, 1e-9, 0.3, 1.0, 3.0, 12.0]))
        return Float(name, low, high, log=True)
    low = draw(st.floats(-1e9, 1e9, allow_nan=False))
    span = draw(st.sampled_from([0.0, 1e-12, 1e-6, 1.0, 1e3, 1e9])) * draw(st.floats(0.1, 10.0))
    return Float(name, low, low + span)


@st.composite
def ints(draw, name: str) -> Int:
    if draw(st.booleans()):
        low = draw(st.integers(1, 10**6))
        return Int(name, low, low + draw(st.integers(0, 10**9)), log=True)
    low = draw(st.integers(-(10**9), 10**9))
    return Int(name, low, low + draw(st.sampled_from([0, 1, 2, 7]) | st.integers(0, 10**9)))


CHOICE = st.one_of(
    st.integers(-1000, 1000),
    st.text(string.ascii_letters, max_size=4),
    st.booleans(),
    st.none(),
    st.floats(-10, 10, allow_nan=False).filter(lambda x: not x.is_integer()),
)


@st.composite
def categoricals(draw, name: str) -> Categorical:
    # distinct as values (1 and True are equal: a space refuses them together)
    choices = draw(st.lists(CHOICE, min_size=1, max_size=6, unique_by=lambda v: v))
    return Categorical(name, tuple(choices))


@st.composite
def ordinals(draw, name: str) -> Ordinal:
    values = draw(st.lists(st.floats(1e-6, 1e6), min_size=1, max_size=8, unique=True))
    return Ordinal(name, tuple(sorted(values)))


@st.composite
def spaces(draw, max_params: int = 4) -> SearchSpace:
    names = draw(st.lists(NAMES, min_size=1, max_size=max_params, unique=True))
    params = [draw(st.one_of(floats(n), ints(n), categoricals(n), ordinals(n))) for n in names]
    return SearchSpace(tuple(params), name="random")


def close(a, b, param) -> bool:
    """Equal, or (a float parameter) equal to float rounding on its scale."""
    if isinstance(param, Float):
        scale = max(abs(param.low), abs(param.high), 1e-300)
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * scale)
    return type(a) is type(b) and a == b


def examples(quick: int) -> int:
    """Examples for a slow property: `quick` in the default profile, the profile's own
    count in a thorough run (`--hypothesis-profile thorough`: 500)."""
    from hypothesis import settings

    return quick if settings.default.max_examples <= 30 else settings.default.max_examples
