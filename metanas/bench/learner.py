"""`metanas bench learner`: how many updates per second one MetaLearner absorbs, for
supernets of the demo's size (about 25k parameters), 250k and 2.5M, async and sync, fed by
zero-cost producers (`metanas.cluster.learner_load`) so that nothing but the MetaLearner
limits the rate. Beside each rate: the bytes copied per update (stage by stage), and the
physical limit of this machine, the memory bandwidth measured in the same run divided by
the bytes an update must touch at least (written once into shared memory by its producer,
read once by the MetaLearner, and the running sum it joins read and written: 4 x 4P
bytes for P float32 parameters)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from metanas.cluster.schema import Campaign
from metanas.platform.config import demo_config_path, load_campaign

SIZES = {"demo_25k": 16, "250k": 58, "2.5M": 188}  # supernet channels -> about that many parameters
MIN_TOUCHED_PASSES = 4  # update written, update read, sum read, sum written
META_BATCH = 16  # updates per meta-step (a sync iteration's)
# The embedded Ray's object store, sized to what the producers keep in flight (at most
# 2 x 8 calls of 8 x 10 MB at 2.5M parameters) rather than Ray's 30% of memory: a process
# takes a page fault on each store page it touches first, and a long campaign's processes
# have long touched a store of any size; in a small one the bench's fresh ones do so within
# its warm-up (measured: 80 MB puts cost 44 ms of CPU in a fresh 7 GB store, 14 ms once
# every page was touched, after 44 GB of puts; 14 ms from the start in a 2 GB one).
OBJECT_STORE_BYTES = 2 << 30


def supernet_params(channels: int) -> dict[str, np.ndarray]:
    """The demo campaign's supernet with `channels` channels, as float32 arrays."""
    campaign = load_campaign(demo_config_path())
    space = campaign.space.model_copy(update={"channels": channels})
    return campaign_supernet_params(campaign.model_copy(update={"space": space}))


def campaign_supernet_params(campaign: Campaign) -> dict[str, np.ndarray]:
    """A campaign's supernet (seed 0) as float32 arrays, by parameter name."""
    network = campaign.model_spec("metanas").build(seed=0)
    return {
        k: v.detach().numpy().astype(np.float32)
        for k, v in network.state_dict().items()
        if v.is_floating_point()
    }


def timed_load(
    params: dict[str, np.ndarray],
    mode: str,
    seconds: float,
    least: int = 64,
    most: int | None = None,
    warmup_share: float | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """`load_learner` for about `seconds` after a warm-up of `warmup_share` as many updates
    (`load_learner`'s own unless told): a short probe of `least` updates sets how many (at
    least `least`, at most `most`). Ray must be running."""
    from metanas.cluster.learner_load import load_learner

    probe = load_learner(params, mode, updates=least, **kw)
    updates = min(int(max(least, probe["updates_per_s"] * seconds)), most or 1 << 62)
    warmup = None if warmup_share is None else int(updates * warmup_share)
    return load_learner(params, mode, updates=updates, warmup=warmup, **kw)


def memory_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes per second one core moves adding one large array into another (the access
    pattern of a Reptile step: two reads and a write per element), best of `repeats`."""
    n = megabytes * (1 << 20) // 4
    a, b = np.ones(n, dtype=np.float32), np.ones(n, dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.add(a, b, out=a)
        best = min(best, time.perf_counter() - start)
    return 3 * a.nbytes / best


def bench_learner(
    sizes: tuple[str, ...] = tuple(SIZES),
    modes: tuple[str, ...] = ("async", "sync"),
    seconds: float = 4.0,
    per_call: tuple[int, ...] = (1, 8),
) -> dict[str, Any]:
    """For each supernet size and mode: updates per second, bytes copied per update, the
    bandwidth limit and the ratio of the two, with the CPU the MetaLearner, the producers
    and the driver spent. Async runs once per `per_call`: updates one per call as workers
    send them, and stacked several per call as a node's aggregator would. Starts (and
    stops) an embedded Ray unless one is running."""
    from metanas.cluster.connect import connect, is_connected, object_store_capacity, shutdown

    bandwidth = memory_bandwidth()
    ours = not is_connected()
    connect(num_cpus=2, object_store_bytes=OBJECT_STORE_BYTES)
    store = object_store_capacity()
    runs = [(m, k) for m in modes for k in (per_call if m == "async" else (META_BATCH,))]
    try:
        rows = [_measure(size, mode, k, seconds, bandwidth) for size in sizes for mode, k in runs]
    finally:
        if ours:
            shutdown()
    return {
        "memory_bandwidth_gb_s": round(bandwidth / 1e9, 2),
        "object_store_gb": round(store / (1 << 30), 2),
        "meta_batch": META_BATCH,
        "results": rows,
    }


def _measure(size: str, mode: str, per_call: int, seconds: float, bandwidth: float) -> dict[str, Any]:
    from metanas.cluster.learner_load import copies_per_update

    params = supernet_params(SIZES[size])
    parameters = int(sum(v.size for v in params.values()))
    limit = bandwidth / (MIN_TOUCHED_PASSES * 4 * parameters)
    extra = {"per_call": per_call} if mode == "async" else {}
    # Warmed up as long as measured: a campaign's processes live for hours and have long
    # mapped the object store's pages, which a fresh producer or learner touches for the
    # first time (a page fault each: at 2.5M parameters as much CPU as the copies).
    run = timed_load(params, mode, seconds, most=20_000, warmup_share=1.0, meta_batch=META_BATCH, **extra)
    copies = copies_per_update(params, mode, META_BATCH, run["parameter_objects_per_update"])
    wall = run["wall_s"]
    return {
        "supernet": size,
        "parameters": parameters,
        "mode": mode,
        "updates_per_call": per_call,
        "updates": run["updates"],
        "updates_per_s": round(run["updates_per_s"], 1),
        "bytes_copied_per_update": sum(copies.values()),
        "copies": copies,
        "limit_updates_per_s": round(limit, 1),
        "ratio_to_limit": round(run["updates_per_s"] / limit, 3),
        "cpu_share": {who: round(s / wall, 3) for who, s in run["cpu_s"].items()},
        "page_faults_per_update": round(run["page_faults_per_update"]),
        # what it would take with a core to itself and the producers on other machines (an
        # estimate: on 2 cores the producers' copies compete with it)
        "learner_bound_updates_per_s": round(run["updates"] / max(run["cpu_s"]["learner"], 1e-9), 1),
    }
