"""Latency tables: what each op of a space costs on one device, where it runs.

`profile` measures, on one device and thread count, every op of the space at every
(channels, input size, stride) it occurs at in a derived network, and a few whole derived
networks. A `LatencyTable` keeps those rows (Parquet, each row keyed by a device
fingerprint) and turns them into a `LinearCost`: the sum of the genotype's op latencies plus
a constant fitted on the measured networks (their median residual: the stem, cell
combines, pools and head, which every genotype shares).

Latency here is one inference forward pass of `batch` images, median of several timed
blocks, so a busy moment on a shared machine moves it little.
"""

from __future__ import annotations

import json
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from metanas._util.atomic import atomic_write_bytes
from metanas._util.threads import torch_threads
from metanas.searchers.darts.cell_space import CellSpace, Genotype
from metanas.searchers.darts.cost import LinearCost, count_params, edge_sites
from metanas.searchers.darts.ops import make_op
from metanas.searchers.darts.supernet import DiscreteNet

COLUMNS = (
    "device",
    "kind",
    "op",
    "channels",
    "height",
    "width",
    "stride",
    "batch",
    "skeleton",
    "genotype",
    "latency_ms",
    "params",
    "flops",
)


def device_fingerprint(device: str = "cpu", threads: int = 1) -> str:
    """Which hardware and software a latency belongs to: the CPU model and thread count, or
    the GPU's name; and the torch version."""
    if device == "cuda":
        return f"cuda:{torch.cuda.get_device_name(0)}|torch {torch.__version__}"
    return f"cpu:{_cpu_model()} x{threads} threads|torch {torch.__version__}"


def threads_of(fingerprint: str) -> int:
    """The thread count a CPU fingerprint names (1 for a GPU's)."""
    match = re.search(r" x(\d+) threads", fingerprint)
    return int(match.group(1)) if match else 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_ms(run: Callable[[], Any], device: str = "cpu", blocks: int = 7, block_s: float = 0.01) -> float:
    """Median over `blocks` timed blocks of the mean time of one call, in ms; each block
    repeats the call enough times to last about `block_s`."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        run()
    sync()
    start = time.perf_counter()
    run()
    sync()
    once = max(time.perf_counter() - start, 1e-6)
    repeats = max(1, int(block_s / once))
    means = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        sync()
        means.append((time.perf_counter() - start) / repeats)
    return 1000.0 * statistics.median(means)


def count_flops(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds x 2 of the convolutions and matrix products (torch's FLOP counter;
    pools, norms and activations are not counted)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return int(counter.get_total_flops())


def _inference(module: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    module.eval()

    def run():
        with torch.no_grad():
            return module(x)

    return run


def skeleton_key(space: CellSpace, image_size: tuple[int, int], n_classes: int) -> str:
    """What a network's latency depends on besides its genotype."""
    return json.dumps(
        {
            "cells": space.cells,
            "nodes": space.nodes,
            "channels": space.channels,
            "input_cells": space.input_cells,
            "reduction": space.reduction,
            "norm": space.norm,
            "image": list(image_size),
            "classes": n_classes,
            # (keys of older tables stay valid)
            **({"feature_grid": space.feature_grid} if space.feature_grid != 4 else {}),
        },
        sort_keys=True,
    )


def random_genotypes(space: CellSpace, n: int, seed: int = 0) -> list[Genotype]:
    """n distinct genotypes (no 'none' op, as a derived genotype never has one), or every
    one when the space holds fewer."""
    ops = [op for op in space.ops if op != "none"]
    slots = len(space.edge_names)
    n = min(n, len(ops) ** slots)
    rng = np.random.default_rng(seed)
    seen: dict[Genotype, None] = {}
    while len(seen) < n:
        seen[tuple(ops[i] for i in rng.integers(len(ops), size=slots))] = None
    return list(seen)


@dataclass(frozen=True)
class NetworkShape:
    """The network a latency is for: a derived genotype's, of this space, image and head."""

    space: CellSpace
    image_size: tuple[int, int]
    n_classes: int
    in_channels: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "space", replace(self.space, partial_channels=1, drop_path=0.0))
        object.__setattr__(self, "image_size", tuple(self.image_size))

    @property
    def skeleton(self) -> str:
        return skeleton_key(self.space, self.image_size, self.n_classes)

    def network(self, genotype: Genotype) -> DiscreteNet:
        return DiscreteNet(self.space, tuple(genotype), self.in_channels, self.n_classes)

    def measure(self, genotype: Genotype, device: str = "cpu", batch: int = 1) -> dict[str, float]:
        """Measured latency (ms), parameters and FLOPs of one genotype's network."""
        net = self.network(genotype).to(device)
        x = torch.zeros(batch, self.in_channels, *self.image_size, device=device)
        return {
            "latency_ms": time_ms(_inference(net, x), device),
            "params": count_params(net),
            "flops": count_flops(net, x),
        }


def _op_rows(
    shape: NetworkShape, device: str, batch: int, fingerprint: str, progress: Callable[[str], None] | None
) -> list[dict[str, Any]]:
    """Every op of the space measured at every place (channels, size, stride) it runs."""
    rows = []
    sites = edge_sites(shape.space, shape.image_size, shape.in_channels)
    for c, h, w, stride in sorted({(s.channels, s.height, s.width, s.stride) for s in sites}):
        x = torch.randn(batch, c, h, w, device=device).contiguous(memory_format=torch.channels_last)
        for op in shape.space.ops:
            if op == "none":
                continue
            module = make_op(op, c, shape.space.norm, stride).to(device, memory_format=torch.channels_last)
            place = {"channels": c, "height": h, "width": w, "stride": stride, "batch": batch}
            rows.append(
                {
                    "device": fingerprint,
                    "kind": "op",
                    "op": op,
                    **place,
                    "skeleton": "",
                    "genotype": "",
                    "latency_ms": time_ms(_inference(module, x), device),
                    "params": count_params(module),
                    "flops": count_flops(module, x),
                }
            )
        if progress:
            progress(f"ops at {c} channels, {h}x{w}, stride {stride}")
    return rows


def profile(
    shape: NetworkShape,
    device: str = "cpu",
    threads: int = 1,
    batch: int = 1,
    networks: int = 8,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> LatencyTable:
    """Measure every op at every place it runs in the shape's networks, and `networks`
    random derived networks (for the constant). Sets torch's thread count while it runs."""
    fingerprint = device_fingerprint(device, threads)
    with torch_threads(threads):
        rows = _op_rows(shape, device, batch, fingerprint, progress)
        for g in random_genotypes(shape.space, networks, seed):
            rows.append(
                {
                    "device": fingerprint,
                    "kind": "network",
                    "op": "",
                    "channels": shape.space.channels,
                    "height": shape.image_size[0],
                    "width": shape.image_size[1],
                    "stride": 1,
                    "batch": batch,
                    "skeleton": shape.skeleton,
                    "genotype": ",".join(g),
                    **shape.measure(g, device, batch),
                }
            )
        if progress:
            progress(f"{networks} whole networks")
        return LatencyTable(rows)


class LatencyTable:
    """Rows of measured latencies (see `COLUMNS`), of one device or several."""

    def __init__(self, rows: Sequence[dict]) -> None:
        self.rows = [dict(r) for r in rows]

    @property
    def devices(self) -> list[str]:
        return sorted({r["device"] for r in self.rows})

    def for_device(self, device: str | None = None) -> LatencyTable:
        """The rows of one device fingerprint (or of the only one, when None)."""
        devices = self.devices
        if device is None:
            if len(devices) != 1:
                raise ValueError(f"the latency table holds {len(devices)} devices; name one of {devices}")
            device = devices[0]
        if device not in devices:
            raise ValueError(f"the latency table has no rows for device {device!r}; it has {devices}")
        return LatencyTable([r for r in self.rows if r["device"] == device])

    def save(self, path: str | Path) -> Path:
        """Write the rows, keeping those of other devices already in the file."""
        path = Path(path)
        mine = set(self.devices)
        kept = [r for r in LatencyTable.load(path).rows if r["device"] not in mine] if path.exists() else []
        rows = kept + self.rows
        buffer = pa.BufferOutputStream()
        pq.write_table(pa.table({c: [r[c] for r in rows] for c in COLUMNS}), buffer)
        atomic_write_bytes(path, buffer.getvalue().to_pybytes())  # a crash never leaves half a table
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"latency table {path} does not exist; write one with `metanas hw profile`"
            )
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise ValueError(f"latency table {path} is not a readable Parquet file: {err}") from None
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(f"latency table {path} lacks the columns {missing}")
        return cls(table.select(list(COLUMNS)).to_pylist())

    def latency_cost(self, shape: NetworkShape, batch: int | None = None) -> LinearCost:
        """The table as a cost of the shape's genotypes (one device's rows): each slot's op
        latency summed over the cells it is in, plus the median residual of the measured
        networks of this shape."""
        rows = self.for_device().rows
        batch = batch if batch is not None else rows[0]["batch"]
        ops = {
            (r["op"], r["channels"], r["height"], r["width"], r["stride"]): r["latency_ms"]
            for r in rows
            if r["kind"] == "op" and r["batch"] == batch
        }
        space = shape.space
        per_slot = np.zeros((len(space.edge_names), len(space.ops)))
        for site in edge_sites(space, shape.image_size, shape.in_channels):
            for o, op in enumerate(space.ops):
                if op == "none":
                    continue  # never in a derived genotype; costs nothing in a supernet
                key = (op, site.channels, site.height, site.width, site.stride)
                if key not in ops:
                    raise ValueError(
                        f"the latency table has no {op} at {site.channels} channels, "
                        f"{site.height}x{site.width}, "
                        f"stride {site.stride}, batch {batch}: profile this space with `metanas hw profile`"
                    )
                per_slot[site.slot, o] += ops[key]
        cost = LinearCost("latency_ms", space.ops, per_slot, 0.0)
        nets = [
            r
            for r in rows
            if r["kind"] == "network" and r["skeleton"] == shape.skeleton and r["batch"] == batch
        ]
        if not nets:
            raise ValueError(
                "the latency table has no whole networks of this campaign's shape to fit the constant; "
                "profile this space with `metanas hw profile`"
            )
        residuals = [r["latency_ms"] - cost.of(r["genotype"].split(",")) for r in nets]
        return replace(cost, constant=float(np.median(residuals)))
