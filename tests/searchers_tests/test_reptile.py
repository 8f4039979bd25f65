from __future__ import annotations

import pytest
import torch

from metanas.searchers.darts.reptile import AsyncReptile, KeySet, MetaSchedule, StalenessBound, reptile_step


def test_reptile_step_on_a_known_case():
    theta = {"w": torch.tensor([1.0, 2.0]), "alpha": torch.tensor([[0.0, 0.0]])}
    deltas = [
        {"w": torch.tensor([1.0, 0.0]), "alpha": torch.tensor([[2.0, -2.0]])},
        {"w": torch.tensor([3.0, -2.0]), "alpha": torch.tensor([[0.0, 0.0]])},
    ]
    new = reptile_step(theta, deltas, beta_w=0.5, beta_alpha=0.25)
    # w: 1 + 0.5*mean(1,3) = 2 ; 2 + 0.5*mean(0,-2) = 1.5 ; alpha: 0.25*mean(2,0) = 0.25
    assert torch.allclose(new["w"], torch.tensor([2.0, 1.5]))
    assert torch.allclose(new["alpha"], torch.tensor([[0.25, -0.25]]))
    assert torch.equal(theta["w"], torch.tensor([1.0, 2.0]))  # input untouched
    assert torch.equal(reptile_step(theta, [], 1.0, 1.0)["w"], theta["w"])


def test_schedule_decays_and_freezes_alpha_during_warmup():
    s = MetaSchedule(iterations=10, beta_w=1.0, beta_alpha=0.5, beta_final_fraction=0.0, alpha_warmup=4)
    assert s.betas(0) == (1.0, 0.0) and not s.alpha_active(3) and s.alpha_active(4)
    bw, ba = s.betas(5)
    assert bw == pytest.approx(0.5) and ba == pytest.approx(0.25)


def _params(*w: float) -> dict:
    return {"w": torch.tensor(list(w)), "alpha": torch.zeros(1, 2)}


def test_key_set_stays_compact_and_lists_what_is_missing():
    keys = KeySet()
    assert keys.add(1) and keys.add(0) and not keys.add(1)
    assert keys.below == 2 and keys.above == set()  # 0 and 1 folded into the low-water mark
    keys.add(5)
    assert 5 in keys and 3 not in keys and len(keys) == 3
    assert keys.missing(7) == [2, 3, 4, 6]
    assert KeySet.from_json(keys.to_json()).missing(7) == [2, 3, 4, 6]
    assert KeySet.from_json(None).missing(2) == [0, 1]


def test_async_reptile_without_staleness_equals_the_sync_step():
    schedule = MetaSchedule(iterations=10, beta_w=0.5, beta_alpha=0.5)
    deltas = [_params(1.0, 0.0), _params(3.0, -2.0)]
    expected = reptile_step(_params(1.0, 2.0), deltas, *schedule.betas(0))
    stream = AsyncReptile(_params(1.0, 2.0), schedule, meta_batch=2, bound=StalenessBound(0))
    assert stream.submit(0, 0, deltas[0]) == ("applied", 0)
    # buffered, not yet a step
    assert stream.version == 0 and torch.equal(stream.theta["w"], torch.tensor([1.0, 2.0]))
    assert stream.submit(1, 0, deltas[1]) == ("applied", 0)
    assert stream.version == 1 and torch.allclose(stream.theta["w"], expected["w"])


def test_async_reptile_applies_a_key_once_and_bounds_staleness():
    # constant betas
    schedule = MetaSchedule(iterations=10, beta_w=1.0, beta_alpha=1.0, beta_final_fraction=1.0)
    drop = AsyncReptile(_params(0.0), schedule, meta_batch=1, bound=StalenessBound(1, "drop"))
    assert drop.submit(0, 0, _params(1.0))[0] == "applied"
    assert drop.submit(0, 0, _params(100.0)) == ("duplicate", 0)  # a retried call changes nothing
    drop.submit(1, 1, _params(1.0))
    assert drop.version == 2 and torch.allclose(drop.theta["w"], torch.tensor([2.0]))
    assert drop.submit(2, 0, _params(100.0)) == ("dropped", 2)  # 2 steps old > max_staleness 1
    assert drop.version == 2 and torch.allclose(drop.theta["w"], torch.tensor([2.0]))

    down = AsyncReptile(
        _params(0.0), schedule, meta_batch=1, bound=StalenessBound(1, "downweight"), version=3
    )
    assert down.submit(0, 0, _params(8.0)) == ("downweighted", 3)
    assert torch.allclose(down.theta["w"], torch.tensor([4.0]))  # weight (1 + 1) / (3 + 1)


def test_async_reptile_flushes_a_partial_buffer_as_a_last_step():
    stream = AsyncReptile(_params(0.0), MetaSchedule(10, 1.0, 1.0), meta_batch=4, bound=StalenessBound(2))
    stream.submit(0, 0, _params(2.0))
    stream.submit(1, 0, _params(4.0))
    stream.flush()
    assert stream.version == 1 and torch.allclose(stream.theta["w"], torch.tensor([3.0]))
    stream.flush()  # nothing buffered: no step
    assert stream.version == 1
