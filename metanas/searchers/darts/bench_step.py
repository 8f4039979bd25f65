"""`metanas bench step`: the supernet's training step (forward, backward, Adam) with and
without the speed settings of `supernet.Speed`, measured side by side in one process:
interleaved rounds on the same batch and thread count, medians compared, so a busy
machine slows both alike."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from metanas.searchers.darts.cell_space import CellSpace
from metanas.searchers.darts.supernet import Speed, Supernet

VARIANTS = {
    "before": Speed(channels_last=False, shared_relu=False),
    "channels_last": Speed(channels_last=True, shared_relu=False),
    "after": Speed(),
}


def bench_step(
    image_size: int = 28, batch: int = 25, channels: int = 16, cells: int = 3, nodes: int = 3,
    threads: int = 1, rounds: int = 6, steps: int = 3, device: str = "cpu", autocast: torch.dtype | None = None,
) -> dict[str, Any]:
    """`autocast`: a lower precision to run the forward pass in (e.g. torch.bfloat16 on a GPU)."""
    before_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        space = CellSpace(nodes=nodes, channels=channels, cells=cells)
        x = torch.rand(batch, 1, image_size, image_size, device=device)
        y = torch.arange(batch, device=device) % 5
        runs = {}
        for name, speed in VARIANTS.items():
            torch.manual_seed(0)
            net = Supernet(space, 1, 5, speed).to(device)
            runs[name] = (net, torch.optim.Adam(net.parameters(), lr=1e-3))
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for r in range(rounds + 1):  # round 0 warms up
            for name, (net, opt) in runs.items():
                for _ in range(steps):
                    if device == "cuda":
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    with torch.autocast(device_type=device, dtype=autocast, enabled=autocast is not None):
                        loss = F.cross_entropy(net(x), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if device == "cuda":
                        torch.cuda.synchronize()
                    if r:
                        times[name].append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(before_threads)
    ms = {name: round(statistics.median(t), 1) for name, t in times.items()}
    return {
        "image_size": image_size, "batch": batch, "channels": channels, "cells": cells, "nodes": nodes,
        "ops": len(space.ops), "threads": threads, "device": device, "autocast": str(autocast) if autocast else None, "step_ms": ms,
        "speedup": round(ms["before"] / ms["after"], 2),
    }
