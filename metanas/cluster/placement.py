"""How many TaskWorkers a cluster holds, and what is missing when it cannot place them
(plain functions of the cluster's resources, so they are tested without Ray)."""

from __future__ import annotations

from collections import Counter
from typing import Any


def auto_worker_count(cpus: float, gpus: float, cluster: dict[str, float]) -> int:
    """workers.count: auto -- as many workers as the cluster's CPUs (and GPUs, when each
    worker asks for some) can hold at once, at least one."""
    fits = [cluster.get("CPU", 0) // cpus] if cpus > 0 else []
    if gpus > 0:
        fits.append(cluster.get("GPU", 0) // gpus)
    return max(1, int(min(fits))) if fits else 1


def missing_resources(count: int, cpus: float, gpus: float, cluster: dict[str, float]) -> str:
    """Say which resource the workers ask for beyond what the cluster has."""
    needs = {"CPU": count * cpus, "GPU": count * gpus}
    short = [
        f"{need:g} {name} ({count} x {per:g}) but the cluster has {cluster.get(name, 0):g} {name}"
        for (name, need), per in zip(needs.items(), (cpus, gpus))
        if need > cluster.get(name, 0)
    ]
    if short:
        return (
            "they need "
            + "; ".join(short)
            + ". Lower workers.count or the per-worker resources, or add nodes."
        )
    return f"the cluster has {cluster} in all, but not free: other jobs may hold it (see `ray status`)."


def workers_per_gpu(workers: list[Any]) -> dict[str, int]:
    """How many workers share each GPU, as `node:gpu` -> count (with `gpus_per_worker`
    below 1, several small workers share one GPU)."""
    return dict(Counter(f"{w.node_id}:{gpu}" for w in workers for gpu in w.gpu_ids))
