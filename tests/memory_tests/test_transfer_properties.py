"""Properties of the memory's model on random spaces (Hypothesis): every config its
portfolio and its proposals hold validates, and no proposal repeats a config already
evaluated or running; `metanas.search` under every warm-start policy never raises for a
finite objective. The surrogate trains 20 steps instead of 300 here: what is checked is
where configs come from, not how good the predictions are."""

from __future__ import annotations

import hashlib
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metanas
from metanas.memory.cross_task import CrossTaskSurrogate
from metanas.memory.memory_model import MemoryModel
from metanas.memory.records import PastTask
from metanas.searchers.space import config_key
from tests.strategies import examples, spaces


@pytest.fixture(scope="module", autouse=True)
def quick_surrogate():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CrossTaskSurrogate.fit, "__defaults__", (20,))
        yield


def _past(space, rng: random.Random, tasks: int) -> list[PastTask]:
    out = []
    for t in range(tasks):
        trials = [
            {
                "config": space.sample(rng),
                "score": rng.choice([rng.gauss(0, 1), rng.uniform(-1e6, 1e6), -math.inf]),
            }
            for _ in range(rng.randint(2, 8))
        ]
        out.append(PastTask(f"t{t}", trials))
    return out


@settings(max_examples=examples(20))
@given(spaces(max_params=3), st.integers(0, 2**16), st.integers(0, 3))
def test_the_portfolio_and_every_proposal_validate_and_never_repeat(space, seed, tasks):
    rng = random.Random(seed)
    model = MemoryModel(space, _past(space, rng, tasks), seed)
    if model.tasks:
        for config, _, _ in model.portfolio(4):
            assert space.validate(config) == config
    configs, scores, pending = [], [], []
    for step in range(8):
        proposal = model.suggest(configs, scores, pending)
        assert space.validate(proposal.config) == proposal.config
        taken = {config_key(c) for c in configs + pending}
        fresh_exists = len(taken) < len(model.candidates)  # (a tiny space can run out of configs)
        assert config_key(proposal.config) not in taken or not fresh_exists
        if step % 3 == 2:
            pending.append(proposal.config)  # still running
        else:
            configs.append(proposal.config)
            scores.append(rng.choice([rng.gauss(0, 1), -math.inf]))


@settings(max_examples=examples(6))
@given(spaces(max_params=3), st.integers(0, 2**16))
def test_search_never_raises_for_a_finite_objective_under_any_policy(tmp_path_factory, space, seed):
    memory = tmp_path_factory.mktemp("mem")

    def objective(config):  # finite for every config, whatever its values; the same for the same config
        return int(hashlib.sha1(f"{seed}{config_key(config)}".encode()).hexdigest()[:8], 16) / 2**32

    for i in range(2):
        metanas.search(
            objective, space, task_id=f"past{i}", memory=memory, budget=6, warm_start="none", seed=seed + i
        )
    for policy in ("model", "memory", "portfolio", "none"):
        result = metanas.search(
            objective, space, task_id="new", memory=memory, budget=8, warm_start=policy, seed=seed
        )
        assert len(result.evaluated) == 8
        assert all(space.validate(t.config) == t.config for t in result.evaluated)
    assert all(space.validate(c) == c for c, _, _ in metanas.propose(space, memory=memory, n=3))
