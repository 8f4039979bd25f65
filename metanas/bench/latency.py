"""How well a latency table predicts whole networks: profile the space, then measure
random derived networks the table never saw and compare (`metanas bench latency`)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from metanas._util.stats import spearman
from metanas._util.threads import torch_threads
from metanas.searchers.darts.latency import NetworkShape, device_fingerprint, profile, random_genotypes


def bench_latency(
    shape: NetworkShape,
    networks: int = 50,
    device: str = "cpu",
    threads: int = 1,
    batch: int = 1,
    calibration: int = 8,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Spearman and mean absolute percentage error of the table's prediction against
    measured latency, and FLOPs' Spearman against the same measurements."""
    start = time.perf_counter()
    table = profile(shape, device, threads, batch, networks=calibration, seed=0, progress=progress)
    cost = table.latency_cost(shape)
    seen = {tuple(r["genotype"].split(",")) for r in table.rows if r["kind"] == "network"}
    # fresh networks: drawn from more than needed, the calibration ones left out
    fresh = [g for g in random_genotypes(shape.space, networks + len(seen), seed=1) if g not in seen][
        :networks
    ]
    measured, flops = [], []
    with torch_threads(threads):
        for i, g in enumerate(fresh):
            m = shape.measure(g, device, batch)
            measured.append(m["latency_ms"])
            flops.append(m["flops"])
            if progress and (i + 1) % 10 == 0:
                progress(f"measured {i + 1}/{len(fresh)} networks")
    predicted = np.array([cost.of(g) for g in fresh])
    measured = np.array(measured)
    return {
        "device": device_fingerprint(device, threads),
        "networks": len(fresh),
        "spearman": round(spearman(predicted, measured), 4),
        "mape": round(float(np.mean(np.abs(predicted - measured) / measured)), 4),
        "flops_spearman": round(spearman(flops, measured), 4),
        "latency_ms": {
            "min": round(float(measured.min()), 4),
            "median": round(float(np.median(measured)), 4),
            "max": round(float(measured.max()), 4),
        },
        "calibration_networks": calibration,
        "seconds": round(time.perf_counter() - start, 1),
    }
