"""`metanas bench step`: the supernet's training step (forward, backward, Adam) with and
without the speed settings of `supernet.Speed`, measured side by side in one process:
interleaved rounds on the same batch and thread count, medians compared, so a busy
machine slows both alike.

`partial_channels` K > 1 (PC-DARTS) builds all three on the partial-channel supernet and
adds a fourth, `full_channels`: the `after` settings with every channel mixed (K = 1), in
the same rounds, so `partial_speedup` is K's gain on its own."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from metanas._util.threads import torch_threads
from metanas.searchers.darts.cell_space import CellSpace
from metanas.searchers.darts.supernet import Speed, Supernet

VARIANTS = {
    "before": Speed(channels_last=False, shared_relu=False, own_cpu_kernels=False, fused_sum=False),
    "channels_last": Speed(channels_last=True, shared_relu=False, own_cpu_kernels=False, fused_sum=False),
    "after": Speed(),
}


def bench_step(
    image_size: int = 28,
    batch: int = 25,
    channels: int = 16,
    cells: int = 3,
    nodes: int = 3,
    threads: int = 1,
    rounds: int = 6,
    steps: int = 3,
    device: str = "cpu",
    autocast: torch.dtype | None = None,
    partial_channels: int = 1,
) -> dict[str, Any]:
    """`autocast`: a lower precision to run the forward pass in (e.g. torch.bfloat16 on a GPU)."""
    with torch_threads(threads):
        space = CellSpace(nodes=nodes, channels=channels, cells=cells, partial_channels=partial_channels)
        variants = {name: (space, speed) for name, speed in VARIANTS.items()}
        if partial_channels > 1:
            variants["full_channels"] = (
                CellSpace(nodes=nodes, channels=channels, cells=cells),
                VARIANTS["after"],
            )
        x = torch.rand(batch, 1, image_size, image_size, device=device)
        y = torch.arange(batch, device=device) % 5
        runs = {}
        for name, (net_space, speed) in variants.items():
            torch.manual_seed(0)
            net = Supernet(net_space, 1, 5, speed).to(device)
            runs[name] = (net, torch.optim.Adam(net.parameters(), lr=1e-3))
        times = _interleaved_times(runs, x, y, rounds, steps, device, autocast)
    ms = {name: round(statistics.median(t), 1) for name, t in times.items()}
    result = {
        "image_size": image_size,
        "batch": batch,
        "channels": channels,
        "cells": cells,
        "nodes": nodes,
        "ops": len(space.ops),
        "threads": threads,
        "device": device,
        "autocast": str(autocast) if autocast else None,
        "partial_channels": partial_channels,
        "step_ms": ms,
        "speedup": round(ms["before"] / ms["after"], 2),
    }
    if partial_channels > 1:
        result["partial_speedup"] = round(ms["full_channels"] / ms["after"], 2)
    return result


def _interleaved_times(
    runs: dict[str, tuple],
    x: torch.Tensor,
    y: torch.Tensor,
    rounds: int,
    steps: int,
    device: str,
    autocast: torch.dtype | None,
) -> dict[str, list[float]]:
    """Each network's step times (ms): `rounds` rounds of `steps` steps of every network in
    turn, so a slow moment of the machine falls on all of them alike (round 0 warms up)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds + 1):
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
    return times
