"""The MetaLearner under load: zero-cost producers send precomputed updates as fast as it
takes them, through the calls and messages a campaign's tasks use (async: the parameters
handed out once per version, each update sent as a worker's returned one travels,
`submit`, or `submit_stack` with several per call as a node's aggregator would; sync: one
parameter object per iteration, `apply` with the iteration's update references), so what
limits the rate is the MetaLearner. `metanas bench learner` runs it; tests run it small."""

from __future__ import annotations

import functools
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import ray

from metanas.cluster.actors import MetaLearner
from metanas.cluster.checkpointer import write_initial_checkpoint
from metanas.cluster.run_dir import RunDir
from metanas.cluster.wire import ParameterCache, pack, stack_updates
from metanas.searchers.darts.reptile import MetaSchedule

LEARNER = "metanas"


@ray.remote(num_cpus=0)
class UpdateProducer:
    """A worker whose tasks cost nothing: each update is sent anew (serialized per task,
    as a TaskWorker's returned update is), from precomputed arrays."""

    def __init__(self, delta: Any) -> None:
        self.delta = delta

    def pid(self) -> int:
        return os.getpid()

    def run_async(
        self, learner: Any, keys: list[int], incarnation: str, window: int, per_call: int = 1
    ) -> tuple[int, int]:
        """Submit one update per key, keeping `window` calls in flight, `per_call` updates
        stacked in each (as a node's aggregator would send them); how many counted, and how
        many parameter objects the tasks were handed (the driver's rule: `ParameterCache`)."""
        cache, counted, in_flight, snapshots = ParameterCache(), 0, [], 1
        cache.put(LEARNER, learner.snapshot.remote(LEARNER))
        # a stack's base version: the first snapshot's, then the newest a reply showed
        newest = ray.get(cache.get(LEARNER)[0])

        def take(replies: list[Any]) -> int:
            nonlocal newest
            for reply in replies:
                if reply.version is not None:
                    cache.saw(LEARNER, reply.incarnation, reply.version)
                    newest = max(newest, reply.version)
            return sum(reply.outcome.counts for reply in replies)

        stacked = stack_updates([self.delta] * per_call) if per_call > 1 else None
        for start in range(0, len(keys), per_call):
            if cache.get(LEARNER) is None:  # (what a task is handed: a snapshot per version)
                cache.put(LEARNER, learner.snapshot.remote(LEARNER))
                snapshots += 1
            version, _params = cache.get(LEARNER)
            # By value, as a worker's returned update travels: inlined under Ray's 100 KiB
            # limit, written into the object store above it (a fresh copy each time).
            if stacked is None:
                in_flight.append(
                    learner.submit.remote(LEARNER, keys[start], version, self.delta, incarnation)
                )
            else:
                # An aggregator's base versions arrive resolved; waiting here for the
                # snapshot's version would drain this producer's window at every step.
                chunk = keys[start : start + per_call]
                update = stacked if len(chunk) == per_call else stack_updates([self.delta] * len(chunk))
                in_flight.append(
                    learner.submit_stack.remote(LEARNER, chunk, [newest] * len(chunk), update, incarnation)
                )
            if len(in_flight) >= window:
                done, in_flight = ray.wait(in_flight, num_returns=1)
                counted += take(_flat(ray.get(done)))
        return counted + take(_flat(ray.get(in_flight))), snapshots

    def put_updates(self, n: int) -> list[Any]:
        """`n` fresh update objects (a sync iteration's share), by reference."""
        return [ray.put(self.delta) for _ in range(n)]


def _flat(replies: list[Any]) -> list[Any]:
    """Replies of single and stacked submits, one per update."""
    return [r for reply in replies for r in (reply if isinstance(reply, list) else [reply])]


def start_learner(params: dict[str, Any], mode: str, meta_batch: int, root: str) -> Any:
    """A MetaLearner actor from an iteration-0 checkpoint of `params` under `root`."""
    import torch

    run_dir = RunDir(root)
    write_initial_checkpoint(run_dir, {LEARNER: {k: torch.as_tensor(v) for k, v in params.items()}})
    schedule = asdict(MetaSchedule(iterations=1_000_000, beta_w=1.0, beta_alpha=1.0))
    settings = None
    if mode == "async":  # (no update is ever stale enough to be dropped here)
        settings = {"meta_batch": meta_batch, "max_staleness": 1_000_000, "stale_policy": "drop"}
    return MetaLearner.options(num_cpus=0).remote(schedule, str(run_dir.root), settings, (LEARNER,))


def load_learner(
    params: dict[str, np.ndarray],
    mode: str,
    updates: int,
    producers: int = 2,
    meta_batch: int = 16,
    window: int = 8,
    per_call: int = 1,
    warmup: int | None = None,
) -> dict[str, Any]:
    """Updates applied per second by one MetaLearner fed by `producers` zero-cost producers
    (`updates` in all, after `warmup` more: a tenth of them unless told), with the CPU
    seconds the MetaLearner, the producers and this driver spent meanwhile, and the page
    faults the MetaLearner and the producers took. Ray must be running."""
    import torch

    with tempfile.TemporaryDirectory(prefix="metanas-learner-load-") as root:
        learner = start_learner(params, mode, meta_batch, root)
        incarnation = ray.get(learner.get_incarnation.remote())
        # packed in the learner's order, as a worker packs the parameters it was handed
        layout = ray.get(learner.layout.remote(LEARNER))
        delta = pack({k: torch.full(params[k].shape, 1e-3) for k in layout})
        feeders = [UpdateProducer.remote(delta) for _ in range(producers)]
        pids = {
            "learner": ray.get(learner.pid.remote()),
            "producers": ray.get([f.pid.remote() for f in feeders]),
        }
        if mode == "async":
            feed = functools.partial(_feed_async, per_call=per_call)
        else:
            feed = _feed_sync
        warmup = max(meta_batch, updates // 10 if warmup is None else warmup)
        feed(learner, feeders, incarnation, 0, warmup, meta_batch, window)
        cpu_before, faults_before = _cpu_seconds(pids), _page_faults(pids)
        start = time.perf_counter()
        counted, parameter_objects = feed(learner, feeders, incarnation, warmup, updates, meta_batch, window)
        wall = time.perf_counter() - start
        cpu = {k: v - cpu_before[k] for k, v in _cpu_seconds(pids).items()}
        faults = _page_faults(pids) - faults_before
        for actor in [learner, *feeders]:
            ray.kill(actor)
    return {
        "updates": counted,
        "wall_s": wall,
        "updates_per_s": counted / wall,
        "cpu_s": cpu,
        "page_faults_per_update": faults / max(counted, 1),
        "parameter_objects_per_update": parameter_objects / max(counted, 1),
    }


def _feed_async(
    learner, feeders, incarnation, first_key, n, meta_batch, window, per_call=1
) -> tuple[int, int]:
    shares = np.array_split(np.arange(first_key, first_key + n), len(feeders))
    runs = ray.get(
        [
            f.run_async.remote(learner, s.tolist(), incarnation, window, per_call)
            for f, s in zip(feeders, shares)
        ]
    )
    return sum(r[0] for r in runs), sum(r[1] for r in runs)


def _feed_sync(learner, feeders, incarnation, first_key, n, meta_batch, window) -> tuple[int, int]:
    """Whole iterations of `meta_batch` updates; the next iteration's updates are put while
    this one is applied, as workers finish tasks while the driver waits."""
    iterations = max(1, n // meta_batch)
    version = ray.get(learner.snapshot.remote(LEARNER)[0])
    per_feeder = [len(s) for s in np.array_split(np.arange(meta_batch), len(feeders))]
    upcoming = [f.put_updates.remote(k) for f, k in zip(feeders, per_feeder)]
    for i in range(iterations):
        refs = [ref for share in ray.get(upcoming) for ref in share]
        if i + 1 < iterations:
            upcoming = [f.put_updates.remote(k) for f, k in zip(feeders, per_feeder)]
        _params = learner.get.remote(LEARNER)  # (one parameter object per iteration, as the driver reads it)
        version = ray.get(learner.apply.remote(LEARNER, version, [1] * len(refs), *refs))
    return iterations * meta_batch, iterations


def _stat(pid: int) -> list[str]:
    """A process's /proc stat fields after its name (Linux)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_seconds(pids: dict[str, Any]) -> dict[str, float]:
    """CPU seconds (user + system) each process has used so far."""

    def seconds(pid: int) -> float:
        fields = _stat(pid)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    return {
        "learner": seconds(pids["learner"]),
        "producers": sum(seconds(p) for p in pids["producers"]),
        "driver": seconds(os.getpid()),
    }


def _page_faults(pids: dict[str, Any]) -> int:
    """Minor page faults the MetaLearner and the producers have taken so far: a process's
    first touch of each object-store page it has not mapped yet (a fresh process touches
    them all once, a long-lived one seldom)."""
    return sum(int(_stat(pid)[7]) for pid in [pids["learner"], *pids["producers"]])


def copies_per_update(
    params: dict[str, np.ndarray], mode: str, meta_batch: int, parameter_objects_per_update: float
) -> dict[str, int]:
    """Bytes copied per update at each stage of its way, probed on this code path, not
    assumed: `pack` (the worker lays its update out flat), `serialize` (Ray writes it into
    the object store: always once), `deserialize` (the MetaLearner reading it back: 0 when
    numpy reads it in place), `to_tensor` (0 when the tensor shares the array's memory),
    `reptile_step` (what the step allocates per update, from torch's profiler),
    `parameters_out` (the parameters written into the object store for tasks, per update,
    counted in the load run)."""
    import torch

    from metanas.cluster.actors import read_update

    tensors = {k: torch.as_tensor(v) for k, v in params.items()}
    packed = pack(tensors)
    size = packed.nbytes
    packed_in_place = all(np.shares_memory(packed.flat, v.numpy()) for v in tensors.values())
    stored = ray.get(ray.put(packed))
    in_place = not stored.flat.flags.owndata and not stored.flat.flags.writeable
    read = read_update(stored, stored.names)
    shared = np.shares_memory(read.numpy(), stored.flat)
    return {
        "pack": 0 if packed_in_place else size,
        "serialize": size,
        "deserialize": 0 if in_place else size,
        "to_tensor": 0 if shared else size,
        "reptile_step": _step_allocations(tensors, mode, meta_batch),
        "parameters_out": int(size * parameter_objects_per_update),
    }


def _step_allocations(params: dict[str, Any], mode: str, meta_batch: int) -> int:
    """Bytes the Reptile step allocates per update (torch's CPU memory profiler), for a
    whole meta-batch of updates taken as the MetaLearner takes them: one by one into the
    running sum (async), or averaged at once (sync)."""
    from torch.profiler import ProfilerActivity, profile

    from metanas.cluster.wire import mean_update
    from metanas.searchers.darts.reptile import AsyncReptile, MetaSchedule, StalenessBound, reptile_step

    theta = {k: v.clone() for k, v in params.items()}
    updates = [pack(params) for _ in range(meta_batch)]
    schedule = MetaSchedule(iterations=10, beta_w=1.0, beta_alpha=1.0)
    stream = AsyncReptile(theta, schedule, meta_batch, StalenessBound(10))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        if mode == "async":
            for key, update in enumerate(updates):
                stream.submit(key, 0, update.tensor())
        else:
            reptile_step(theta, [mean_update(updates)], 1.0, 1.0)
    allocated = sum(e.self_cpu_memory_usage for e in prof.events() if e.self_cpu_memory_usage > 0)
    return allocated // meta_batch
