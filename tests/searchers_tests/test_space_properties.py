"""Properties of every search space (Hypothesis): whatever the space, every config that
sampling, decoding, local moves or Optuna produce validates and round-trips."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metanas.searchers.optuna_search import optuna_distributions
from metanas.searchers.space import Categorical, Float, Int, SearchSpace, config_key
from tests.strategies import close, spaces


def _same(space: SearchSpace, a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(close(a[p.name], b[p.name], p) for p in space.params)


@given(spaces(), st.integers(0, 2**32))
def test_a_sampled_config_validates_encodes_in_the_unit_box_and_decodes_back(space, seed):
    config = space.sample(seed)
    assert space.validate(config) == config
    vector = space.encode(config)
    assert len(vector) == space.encoded_dims and all(0.0 <= x <= 1.0 for x in vector)
    decoded = space.decode(vector)
    assert space.validate(decoded) == decoded and _same(space, decoded, config)


@given(spaces(), st.data())
def test_any_vector_decodes_to_a_valid_config(space, data):
    vector = data.draw(
        st.lists(st.floats(-2.0, 3.0), min_size=space.encoded_dims, max_size=space.encoded_dims)
    )
    config = space.decode(vector)
    assert space.validate(config) == config
    assert space.decode(space.encode(config)) == config or _same(
        space, space.decode(space.encode(config)), config
    )


@given(spaces(), st.integers(0, 2**32), st.sampled_from([0.0, 1.0, 0.5]))
def test_every_neighbour_validates_and_moves_one_parameter(space, seed, corner):
    # a config at a corner of the box too: every number at its bound (issue 27: exp(log(high)) > high)
    base = space.sample(seed) if corner == 0.5 else space.decode([corner] * space.encoded_dims)
    for move in space.neighbours(base, random.Random(seed)):
        assert space.validate(move) == move
        assert sum(move[n] != base[n] for n in space.names) == 1


@given(spaces(), st.integers(0, 2**32))
def test_a_config_round_trips_through_optuna_and_json(space, seed):
    config = space.sample(seed)
    for name, dist in optuna_distributions(space).items():
        internal = dist.to_internal_repr(config[name])
        assert dist._contains(internal)
        assert close(dist.to_external_repr(internal), config[name], space[name])
    assert config_key(json.loads(config_key(config))) == config_key(config)


def test_choices_that_are_one_value_are_refused():
    for choices in ((1, True), (1, 1.0), ("a", "a")):
        with pytest.raises(ValueError, match="distinct"):
            Categorical("c", choices)
    assert Categorical("c", (1, 2)).validate(2.0) == 2 and type(Categorical("c", (1, 2)).validate(2.0)) is int


def test_decode_refuses_a_vector_of_the_wrong_length():
    space = SearchSpace((Float("x", 0, 1), Int("n", 1, 3)))
    with pytest.raises(ValueError, match="expected a vector of 2"):
        space.decode([0.5])
