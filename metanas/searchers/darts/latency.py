"""Latency tables: what each op of a space costs on one device, where it runs.

`profile` measures, on one device and thread count, every op of the space at every
(channels, input size, stride) it occurs at in a derived network, and random whole derived
networks. A `LatencyTable` keeps those rows (Parquet, each row keyed by a device
fingerprint, with how many timed blocks each latency rests on and how noisy they were) and
turns them into a `LinearCost` calibrated on the measured networks (`latency_fit.py`).
`check_table` measures networks the table never saw and says how well it ranks them here.

Latency is one inference forward pass of `batch` images (`latency_timing.py`: interleaved
blocks, the median of the fastest).
"""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from metanas._util.atomic import atomic_write_bytes
from metanas._util.threads import torch_threads
from metanas.searchers.darts.cell_space import CellSpace, Genotype
from metanas.searchers.darts.cost import LinearCost, count_params, edge_sites
from metanas.searchers.darts.latency_fit import CALIBRATION_NETWORKS, agreement, fit_latency
from metanas.searchers.darts.latency_timing import count_flops, inference, time_calls
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
# Written by every table since they were added; an older table lacks them.
TIMING_COLUMNS = ("repeats", "noise")


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

    def measure(self, genotype: Genotype, device: str = "cpu", batch: int = 1) -> dict[str, Any]:
        """Measured latency (ms), parameters and FLOPs of one genotype's network."""
        return self.measure_many([genotype], device, batch)[0]

    def measure_many(
        self, genotypes: Sequence[Genotype], device: str = "cpu", batch: int = 1
    ) -> list[dict[str, Any]]:
        """Each genotype's network measured, the networks timed together (interleaved):
        latency (ms), timed blocks and their noise, parameters, FLOPs."""
        nets = [self.network(g).to(device) for g in genotypes]
        x = torch.zeros(batch, self.in_channels, *self.image_size, device=device)
        timings = time_calls([inference(net, x) for net in nets], device)
        return [
            {
                "latency_ms": t.latency_ms,
                "repeats": t.repeats,
                "noise": t.noise,
                "params": count_params(net),
                "flops": count_flops(net, x),
            }
            for net, t in zip(nets, timings, strict=True)
        ]


def _op_rows(shape: NetworkShape, device: str, batch: int, fingerprint: str) -> list[dict[str, Any]]:
    """Every op of the space measured at every place (channels, size, stride) it runs, all
    timed together."""
    sites = edge_sites(shape.space, shape.image_size, shape.in_channels)
    places = sorted({(s.channels, s.height, s.width, s.stride) for s in sites})
    rows, runs = [], []
    for c, h, w, stride in places:
        x = torch.randn(batch, c, h, w, device=device).contiguous(memory_format=torch.channels_last)
        for op in shape.space.ops:
            if op == "none":
                continue
            module = make_op(op, c, shape.space.norm, stride).to(device, memory_format=torch.channels_last)
            runs.append(inference(module, x))
            place = {"channels": c, "height": h, "width": w, "stride": stride, "batch": batch}
            rows.append(
                {"device": fingerprint, "kind": "op", "op": op, **place, "skeleton": "", "genotype": ""}
                | {"params": count_params(module), "flops": count_flops(module, x)}
            )
    for row, t in zip(rows, time_calls(runs, device), strict=True):
        row.update(latency_ms=t.latency_ms, repeats=t.repeats, noise=t.noise)
    return rows


def _network_rows(
    shape: NetworkShape, genotypes: Sequence[Genotype], device: str, batch: int, fingerprint: str
) -> list[dict[str, Any]]:
    place = {"channels": shape.space.channels, "height": shape.image_size[0], "width": shape.image_size[1]}
    return [
        {"device": fingerprint, "kind": "network", "op": "", **place, "stride": 1, "batch": batch}
        | {"skeleton": shape.skeleton, "genotype": ",".join(g), **m}
        for g, m in zip(genotypes, shape.measure_many(genotypes, device, batch), strict=True)
    ]


def profile(
    shape: NetworkShape,
    device: str = "cpu",
    threads: int = 1,
    batch: int = 1,
    networks: int = CALIBRATION_NETWORKS,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> LatencyTable:
    """Measure every op at every place it runs in the shape's networks, and `networks`
    random derived networks (to calibrate on). Sets torch's thread count while it runs."""
    fingerprint = device_fingerprint(device, threads)
    with torch_threads(threads):
        rows = _op_rows(shape, device, batch, fingerprint)
        if progress:
            progress(f"{len(rows)} ops measured where they run")
        rows += _network_rows(
            shape, random_genotypes(shape.space, networks, seed), device, batch, fingerprint
        )
        if progress:
            progress(f"{networks} whole networks measured")
        return LatencyTable(rows)


def check_table(
    cost: LinearCost,
    shape: NetworkShape,
    genotypes: Sequence[Genotype],
    device: str = "cpu",
    threads: int = 1,
    batch: int = 1,
) -> dict[str, Any]:
    """How well `cost` predicts `genotypes`' networks measured here and now (`score`)."""
    with torch_threads(threads):
        measured = shape.measure_many(genotypes, device, batch)
    return {"device": device_fingerprint(device, threads), **score(cost, genotypes, measured)}


def score(cost: LinearCost, genotypes: Sequence[Genotype], measured: Sequence[dict]) -> dict[str, Any]:
    """Spearman and mean absolute percentage error of `cost` against measured networks,
    FLOPs' Spearman beside them, the latencies' range and the timings' median noise."""
    latency = np.array([m["latency_ms"] for m in measured])
    return {
        "networks": len(genotypes),
        **agreement([cost.of(g) for g in genotypes], latency),
        "flops_spearman": agreement([m["flops"] for m in measured], latency)["spearman"],
        "latency_ms": {
            "min": round(float(latency.min()), 4),
            "median": round(float(np.median(latency)), 4),
            "max": round(float(latency.max()), 4),
        },
        "noise": round(float(np.median([m["noise"] for m in measured])), 4),
    }


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
        columns = {c: [r[c] for r in rows] for c in COLUMNS}
        columns |= {c: [r.get(c) for r in rows] for c in TIMING_COLUMNS}
        pq.write_table(pa.table(columns), buffer)
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
        timing = [c for c in TIMING_COLUMNS if c in table.column_names]
        return cls(table.select(list(COLUMNS) + timing).to_pylist())

    def networks(self, shape: NetworkShape, batch: int | None = None) -> list[dict]:
        """The measured whole networks of this shape (one device's rows)."""
        rows = self.for_device().rows
        batch = batch if batch is not None else rows[0]["batch"]
        return [
            r
            for r in rows
            if r["kind"] == "network" and r["skeleton"] == shape.skeleton and r["batch"] == batch
        ]

    def unseen_genotypes(self, shape: NetworkShape, n: int, batch: int | None = None) -> list[Genotype]:
        """n random derived genotypes of the shape, none of the table's measured networks."""
        seen = {tuple(r["genotype"].split(",")) for r in self.networks(shape, batch)}
        return [g for g in random_genotypes(shape.space, n + len(seen), seed=1) if g not in seen][:n]

    def latency_cost(
        self, shape: NetworkShape, batch: int | None = None, calibration: int | None = None
    ) -> LinearCost:
        """The table as a cost of the shape's genotypes (one device's rows): each slot's op
        latency summed over the cells it is in, calibrated on the measured networks of this
        shape (the first `calibration` of them; all by default)."""
        rows = self.for_device().rows
        batch = batch if batch is not None else rows[0]["batch"]
        ops = {
            (r["op"], r["channels"], r["height"], r["width"], r["stride"]): r["latency_ms"]
            for r in rows
            if r["kind"] == "op" and r["batch"] == batch
        }
        space = shape.space
        per_slot = np.zeros((len(space.edge_names), len(space.ops)))
        places = np.zeros_like(per_slot)
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
                places[site.slot, o] += 1
        nets = self.networks(shape, batch)[:calibration]
        if not nets:
            raise ValueError(
                "the latency table has no whole networks of this campaign's shape to calibrate on; "
                "profile this space with `metanas hw profile`"
            )
        measured = [(r["genotype"].split(","), r["latency_ms"]) for r in nets]
        return fit_latency(space.ops, per_slot, places, measured)

    def timing(self) -> dict[str, Any]:
        """How the table's latencies were timed: blocks per latency and their median noise
        (None for a table written before they were recorded)."""
        noise = [r["noise"] for r in self.rows if r.get("noise") is not None]
        repeats = sorted({r["repeats"] for r in self.rows if r.get("repeats") is not None})
        return {
            "repeats": repeats[0] if len(repeats) == 1 else (repeats or None),
            "median_noise": round(float(np.median(noise)), 4) if noise else None,
        }
