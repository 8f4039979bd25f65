"""`metanas bench scaling`: meta-training throughput of the demo campaign with 1 and 2
workers, measured side by side in one run on one embedded Ray."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from metanas.platform.campaign import RunDir
from metanas.platform.config import Campaign


def _shortened(campaign: Campaign, iterations: int, workers: int) -> Campaign:
    mt = campaign.meta_train
    warmup = round(mt.alpha_warmup * iterations / mt.iterations)  # same share of alpha-free iterations
    return campaign.model_copy(
        update={
            "meta_train": mt.model_copy(update={"iterations": iterations, "alpha_warmup": warmup, "checkpoint_every": iterations}),
            "workers": campaign.workers.model_copy(update={"count": workers}),
        }
    )


def bench_scaling(campaign: Campaign, iterations: int = 20, worker_counts: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    from metanas.cluster.connect import connect
    from metanas.cluster.driver import CampaignDriver

    connect(num_cpus=max(worker_counts))
    rows = []
    for workers in worker_counts:
        c = _shortened(campaign, iterations, workers)
        with tempfile.TemporaryDirectory() as tmp:
            driver = CampaignDriver(c, RunDir(Path(tmp)), address=None, progress=False)
            try:
                # One untimed iteration first: process start-up and imports are not throughput.
                driver.meta_train_warmup()
                start = time.perf_counter()
                summary, _ = driver.meta_train()
                wall = time.perf_counter() - start
            finally:
                driver.close()
        rows.append({"workers": workers, "wall_s": wall, "tasks": summary["tasks_completed"], "inner_s": summary["inner_loop_s"]})
    tasks_per_s = [r["tasks"] / r["wall_s"] for r in rows]
    last = rows[-1]
    return {
        "iterations": iterations,
        "workers": list(worker_counts),
        "tasks_per_s": [round(x, 3) for x in tasks_per_s],
        "parallel_efficiency": round(tasks_per_s[-1] / (last["workers"] * tasks_per_s[0] / rows[0]["workers"]), 3),
        "ray_overhead_fraction": round(1 - last["inner_s"] / (last["wall_s"] * last["workers"]), 3),
        "wall_s": [round(r["wall_s"], 2) for r in rows],
    }
