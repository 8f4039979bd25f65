"""Parameters and updates packed into one array (issue 30): read in place, added in one
step, the same numbers as the named path; the parameter cache asks once per version."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metanas.cluster.actors import read_update
from metanas.cluster.wire import Packed, ParameterCache, mean_update, pack, unpack
from metanas.searchers.darts.reptile import AsyncReptile, MetaSchedule, StalenessBound, reptile_step


def params(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(3, 4, generator=g),
        "alpha": torch.randn(2, 7, generator=g),
        "b": torch.randn(5, generator=g),
    }


def test_a_packed_update_round_trips_and_its_views_share_its_memory():
    p = params(0)
    packed = pack(p)
    assert packed.names == ("w", "alpha", "b") and packed.flat.dtype == np.float32 and packed.nbytes == 4 * 31
    views = unpack(packed)
    assert all(torch.equal(views[k], p[k]) for k in p)
    assert all(np.shares_memory(v.numpy(), packed.flat) for v in views.values())
    read_only = Packed(packed.names, packed.shapes, packed.flat.copy())
    read_only.flat.flags.writeable = False  # as it lies in Ray's object store
    tensor = read_update(read_only, ("w", "alpha", "b"))
    assert tensor.shape == (31,) and np.shares_memory(tensor.numpy(), read_only.flat)
    assert isinstance(read_update(read_only, ("b", "w", "alpha")), dict)  # another order: by name


def test_the_flat_async_step_equals_the_named_one_and_the_sync_step():
    theta = params(1)
    deltas = [params(10 + i) for i in range(4)]
    schedule = MetaSchedule(iterations=10, beta_w=0.5, beta_alpha=0.25)
    named = AsyncReptile({k: v.clone() for k, v in theta.items()}, schedule, 4, StalenessBound(3))
    flat = AsyncReptile({k: v.clone() for k, v in theta.items()}, schedule, 4, StalenessBound(3))
    for key, d in enumerate(deltas):
        named.submit(key, 0, d)
        flat.submit(key, 0, pack(d).tensor())
    sync = reptile_step(theta, [mean_update([pack(d) for d in deltas])], 0.5, 0.25)
    assert named.version == flat.version == 1
    for k in theta:
        assert torch.allclose(named.theta[k], flat.theta[k], atol=1e-6)
        assert torch.allclose(flat.theta[k], sync[k], atol=1e-6)
        assert torch.allclose(sync[k], reptile_step(theta, deltas, 0.5, 0.25)[k], atol=1e-6)


def test_the_flat_step_keeps_staleness_weights_and_drops_a_repeated_key():
    theta = {"w": torch.zeros(2)}
    stream = AsyncReptile(theta, MetaSchedule(10, 1.0, 1.0, beta_final_fraction=1.0), 2, StalenessBound(0))
    stream.version = 3
    one = pack({"w": torch.ones(2)}).tensor()
    assert stream.submit(0, 3, one)[0].value == "applied"
    assert stream.submit(0, 3, one)[0].value == "duplicate"
    assert stream.submit(1, 1, one)[0].value == "downweighted"  # staleness 2: weight 1/3
    assert torch.allclose(theta["w"], torch.full((2,), (1 + 1 / 3) / 2))


def test_the_parameter_cache_asks_again_only_for_a_new_version_or_incarnation():
    cache = ParameterCache()
    assert cache.get("m") is None
    cache.saw("m", "i1", 0)
    cache.put("m", ("v0", "p0"))
    cache.saw("m", "i1", 0)
    assert cache.get("m") == ("v0", "p0")  # same version: the same objects
    cache.saw("m", "i1", 1)
    assert cache.get("m") is None  # stepped
    cache.put("m", ("v1", "p1"))
    cache.saw("m", "i2", 1)
    assert cache.get("m") is None  # restarted: another incarnation


@pytest.mark.parametrize("n", [1, 3])
def test_the_mean_of_packed_updates_is_the_mean(n):
    deltas = [params(i) for i in range(n)]
    mean = mean_update([pack(d) for d in deltas])
    for k in deltas[0]:
        assert torch.allclose(mean[k], torch.stack([d[k] for d in deltas]).mean(0), atol=1e-6)


def test_a_stack_of_updates_steps_as_submitting_them_one_by_one():
    """Rows across a step boundary, a repeated key, a stale one: the same outcomes, the same
    staleness and the same meta-parameters as one by one (as a node's aggregator sends them)."""
    theta = params(2)
    updates = [params(20 + i) for i in range(7)]
    keys, bases = [0, 1, 2, 1, 3, 4, 5], [0, 0, 0, 0, 0, 0, 1]
    schedule = MetaSchedule(iterations=10, beta_w=0.5, beta_alpha=0.25)
    one = AsyncReptile({k: v.clone() for k, v in theta.items()}, schedule, 3, StalenessBound(0))
    stacked = AsyncReptile({k: v.clone() for k, v in theta.items()}, schedule, 3, StalenessBound(0))
    singles = [one.submit(k, b, pack(u).tensor()) for k, b, u in zip(keys, bases, updates)]
    rows = torch.stack([pack(u).tensor() for u in updates])
    together = stacked.submit_stack(keys, bases, rows)
    assert together == singles and one.version == stacked.version == 2 and one.buffered == stacked.buffered
    assert [o.value for o, _ in together].count("duplicate") == 1 and any(s > 0 for _, s in together)
    for k in theta:
        assert torch.allclose(one.theta[k], stacked.theta[k], atol=1e-6)
    assert torch.allclose(one.flat_buffer, stacked.flat_buffer, atol=1e-6)


def test_stacked_updates_lie_one_after_another():
    from metanas.cluster.wire import stack_updates

    a, b = pack(params(0)), pack(params(1))
    stack = stack_updates([a, b])
    assert stack.names == a.names and stack.tensor().view(2, -1).shape == (2, 31)
    assert torch.equal(stack.tensor().view(2, -1)[1], b.tensor())
    with pytest.raises(ValueError, match="different layouts"):
        stack_updates([a, pack({"w": torch.zeros(31)})])
