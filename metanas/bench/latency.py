"""How well a latency table predicts whole networks: profile the space, then measure
random derived networks the table never saw and compare (`metanas bench latency`). The
same fresh networks also judge the table calibrated on fewer of its networks, which is how
`CALIBRATION_NETWORKS` was chosen."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from metanas._util.threads import torch_threads
from metanas.searchers.darts.latency import NetworkShape, device_fingerprint, profile, score
from metanas.searchers.darts.latency_fit import CALIBRATION_NETWORKS, agreement


def bench_latency(
    shape: NetworkShape,
    networks: int = 50,
    device: str = "cpu",
    threads: int = 1,
    batch: int = 1,
    calibration: Sequence[int] = (8, 16, CALIBRATION_NETWORKS, 64),
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Spearman and mean absolute percentage error of the table's prediction (calibrated
    on `CALIBRATION_NETWORKS` networks) against measured latency, FLOPs' Spearman against
    the same measurements, and both for every count in `calibration`."""
    start = time.perf_counter()
    most = max([*calibration, CALIBRATION_NETWORKS])
    table = profile(shape, device, threads, batch, networks=most, seed=0, progress=progress)
    fresh = table.unseen_genotypes(shape, networks)
    with torch_threads(threads):
        measured = shape.measure_many(fresh, device, batch)
    if progress:
        progress(f"measured {len(fresh)} fresh networks")
    latency = [m["latency_ms"] for m in measured]
    by_count = [
        {"networks": k, **agreement([table.latency_cost(shape, calibration=k).of(g) for g in fresh], latency)}
        for k in sorted(set(calibration))
    ]
    result = score(table.latency_cost(shape, calibration=CALIBRATION_NETWORKS), fresh, measured)
    return {
        "device": device_fingerprint(device, threads),
        **result,
        "calibration_networks": CALIBRATION_NETWORKS,
        "by_calibration_networks": by_count,
        "table_timing": table.timing(),
        "seconds": round(time.perf_counter() - start, 1),
    }
