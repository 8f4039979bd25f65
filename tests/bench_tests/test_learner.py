"""`metanas bench learner` and its producers on a real local Ray: every update applied
once, the meta-parameters what the updates add up to, the copies probed (issue 30)."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import ray

from metanas.cluster.learner_load import (
    LEARNER,
    UpdateProducer,
    copies_per_update,
    load_learner,
    start_learner,
)
from metanas.cluster.wire import pack, unpack

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

PARAMS = {
    "w": np.zeros((64, 512), np.float32),
    "alpha": np.zeros((5, 7), np.float32),
}  # 128 KiB: the object store


def test_producers_feed_the_learner_and_every_update_lands_once(ray_session):
    import torch

    with tempfile.TemporaryDirectory() as root:
        learner = start_learner(PARAMS, "async", meta_batch=4, root=root)
        layout = ray.get(learner.layout.remote(LEARNER))
        assert layout == ("alpha", "w")  # (the checkpoint's order, which updates are packed in)
        delta = pack({k: torch.full(PARAMS[k].shape, 0.5) for k in layout})
        incarnation = ray.get(learner.get_incarnation.remote())
        producers = [UpdateProducer.remote(delta) for _ in range(2)]
        keys = [list(range(0, 20)), list(range(20, 40))]
        runs = ray.get(
            [p.run_async.remote(learner, k, incarnation, 4) for p, k in zip(producers[:1], keys[:1])]
        )
        # the other 20 stacked 3 to a call, as a node's aggregator would send them
        runs += ray.get([producers[1].run_async.remote(learner, keys[1], incarnation, 4, 3)])
        again = ray.get(producers[0].run_async.remote(learner, [3, 25], incarnation, 4))  # retried tasks
        final = unpack(ray.get(learner.get.remote(LEARNER)))
        version = ray.get(learner.snapshot.remote(LEARNER)[0])
        for actor in [learner, *producers]:
            ray.kill(actor)
    assert sum(r[0] for r in runs) == 40 and again[0] == 0  # applied once each; the repeats not again
    assert sum(r[1] for r in runs) < 40  # parameters handed out once per version, not per task
    assert version == 10  # 40 updates, 4 per step
    # beta 1, no staleness weight below max_staleness: each step adds the mean update
    assert np.allclose(final["w"].numpy(), 10 * 0.5) and np.allclose(final["alpha"].numpy(), 10 * 0.5)


@pytest.mark.parametrize("mode, per_call", [("async", 1), ("async", 3), ("sync", 1)])
def test_the_load_run_and_its_copy_probe(ray_session, mode, per_call):
    extra = {"per_call": per_call} if mode == "async" else {}
    # a warm-up longer than the run: its keys must not collide with the measured ones
    run = load_learner(PARAMS, mode, updates=32, producers=2, meta_batch=4, warmup=48, **extra)
    assert (
        run["updates"] == 32
        and run["updates_per_s"] > 0
        and set(run["cpu_s"]) == {"learner", "producers", "driver"}
        and run["page_faults_per_update"] >= 0
    )
    copies = copies_per_update(PARAMS, mode, 4, run["parameter_objects_per_update"])
    size = 4 * sum(v.size for v in PARAMS.values())
    assert copies["serialize"] == size and copies["deserialize"] == 0 and copies["to_tensor"] == 0
    # at most once per version (4 updates) for each of the 2 producers, and the one each
    # starts from: (32 / 4 + 1) * 2 objects for 32 updates
    assert copies["parameters_out"] <= size * (32 // 4 + 1) * 2 // 32
    if mode == "async":
        assert copies["reptile_step"] == 0  # added in place into the running sum


def test_bench_learner_rows(ray_session):
    """The bench's row for one size and mode, warmed up as long as measured."""
    from metanas.bench.learner import bench_learner

    out = bench_learner(sizes=("demo_25k",), modes=("async",), seconds=0.2, per_call=(1,))
    (row,) = out["results"]
    assert out["memory_bandwidth_gb_s"] > 0 and out["object_store_gb"] > 0 and row["parameters"] > 20_000
    assert row["updates"] >= 64 and row["updates_per_s"] > 0 and row["page_faults_per_update"] >= 0
    assert abs(row["ratio_to_limit"] - row["updates_per_s"] / row["limit_updates_per_s"]) < 2e-3
