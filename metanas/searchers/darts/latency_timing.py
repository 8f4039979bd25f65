"""Timing small forward passes so that a busy moment on a shared machine moves the result
little: warm-up calls, then timed blocks taken round-robin over everything measured
together (a burst of background load lands on all of them alike, not on one), then the
median of each one's fastest blocks (interference only ever adds time). Measured with and
without a CPU-bound process beside (README "Hardware budgets").
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

WARMUP_CALLS = 3
ROUNDS = 15  # timed blocks per measured thing
BLOCK_S = 0.004  # each block repeats the call for about this long
KEEP = 0.8  # the fastest share of the blocks that counts


@dataclass(frozen=True)
class Timing:
    """One measured call: its latency (ms), how many timed blocks it rests on, and their
    spread (interquartile range of the kept blocks over their median)."""

    latency_ms: float
    repeats: int
    noise: float


def summarize(block_ms: Sequence[float]) -> Timing:
    kept = sorted(block_ms)[: max(1, math.ceil(KEEP * len(block_ms)))]
    median = statistics.median(kept)
    q1, q3 = np.percentile(kept, [25, 75])
    return Timing(float(median), len(block_ms), float((q3 - q1) / median) if median > 0 else 0.0)


def time_calls(
    runs: Sequence[Callable[[], Any]], device: str = "cpu", rounds: int = ROUNDS, block_s: float = BLOCK_S
) -> list[Timing]:
    """Each call's latency, the calls timed together: `rounds` rounds, each one block of
    every call in turn."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    repeats = []
    for run in runs:
        for _ in range(WARMUP_CALLS):
            run()
        sync()
        start = time.perf_counter()
        run()
        sync()
        repeats.append(max(1, int(block_s / max(time.perf_counter() - start, 1e-6))))
    blocks: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            for _ in range(repeats[i]):
                run()
            sync()
            blocks[i].append(1000.0 * (time.perf_counter() - start) / repeats[i])
    return [summarize(b) for b in blocks]


def inference(module: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    """One forward pass of `module` on `x`, without autograd, in eval mode."""
    module.eval()

    def run():
        with torch.no_grad():
            return module(x)

    return run


def count_flops(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds x 2 of the convolutions and matrix products (torch's FLOP counter;
    pools, norms and activations are not counted)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return int(counter.get_total_flops())
