"""`metanas bench driver-memory`: does the driver's memory stay flat over a long campaign?

A tiny async campaign (8x8 digits, a one-node cell of 4 channels, one inner step, the
supernet only) runs `tasks` meta-training tasks on an embedded Ray while a thread samples
the driver's resident memory (VmRSS) against the number of finished tasks (from the run's
event log). Reported: the RSS after 1/10 of the tasks and at the end, and their ratio; a
driver that keeps something per task grows linearly and shows it.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from metanas.cluster.events import EVENTS_FILE
from metanas.cluster.run_dir import RunDir
from metanas.cluster.schema import Campaign

META_BATCH = 8


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (a Linux benchmark)")


def tiny_campaign(tasks: int) -> Campaign:
    return Campaign.model_validate(
        {
            "name": "driver-memory",
            "seed": 0,
            "data": {"source": "digits", "split": "class", "test_classes": 12},
            "episodes": {"n_way": 5, "k_shot": 1, "query": 2, "train_shots": 1, "train_query": 2},
            "space": {"nodes": 1, "channels": 4, "cells": 1},
            "meta_train": {
                "iterations": max(1, tasks // META_BATCH),
                "meta_batch": META_BATCH,
                "inner": {"steps": 1, "lr_w": 0.003, "lr_alpha": 0.003},
                "checkpoint_every": 50,
                "updates": "async",
            },
            "meta_test": {
                "tasks": 2,
                "adapt": {"steps": 1, "lr_w": 0.003, "lr_alpha": 0.003},
                "baselines": [],
            },
            "workers": {"count": 2, "cpus_per_worker": 1},
        }
    )


def bench_driver_memory(tasks: int = 10_000) -> dict[str, Any]:
    from metanas.cluster.campaign_driver import CampaignDriver

    campaign = tiny_campaign(tasks)
    early = tasks // 10
    samples: list[tuple[int, float]] = []
    done = threading.Event()
    with tempfile.TemporaryDirectory(prefix="metanas-bench-driver-") as tmp:
        events = Path(tmp) / EVENTS_FILE

        def sample() -> None:
            while not done.is_set():
                finished = events.read_bytes().count(b'"completed"') if events.exists() else 0
                samples.append((finished, _rss_mb()))
                time.sleep(0.5)

        runner = CampaignDriver(campaign, RunDir(Path(tmp)), progress=False)
        thread = threading.Thread(target=sample, daemon=True)
        try:
            runner.start()
            start_rss = _rss_mb()
            thread.start()
            started = time.perf_counter()
            summary, _ = runner.meta_train()
            seconds = time.perf_counter() - started
            at_end = _rss_mb()
        finally:
            done.set()
            runner.close()
    at_early = next((rss for n, rss in samples if n >= early), at_end)
    return {
        "tasks": summary["tasks_completed"],
        "rss_mb_at_start": round(start_rss, 1),
        f"rss_mb_after_{early}": round(at_early, 1),
        f"rss_mb_after_{summary['tasks_completed']}": round(at_end, 1),
        "ratio": round(at_end / at_early, 3),
        "seconds": round(seconds, 1),
    }
