"""A campaign's hardware budget (`constraints:`), free of Ray.

The limits are built once, on the driver before Ray starts, from a latency table (the one
the campaign names, or one profiled now on `constraints.device`), and kept in the run
directory with the table, so a resumed campaign and `metanas.load` use the very same ones.
After meta-test, `hardware_summary` measures every genotype the campaign derived and puts
accuracy, latency, parameters and the Pareto front in the report.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from metanas._util.atomic import atomic_write_json
from metanas._util.threads import torch_threads
from metanas.cluster.messages import TestResult
from metanas.cluster.schema import Campaign, Constraints
from metanas.searchers.darts.cost import CostLimit, params_cost
from metanas.searchers.darts.latency import (
    LatencyTable,
    NetworkShape,
    check_table,
    device_fingerprint,
    profile,
)
from metanas.searchers.darts.latency_fit import CHECK_NETWORKS, check_problem, trusted
from metanas.searchers.pareto import pareto_front

log = logging.getLogger(__name__)

LIMITS_FILE = "constraints.json"
TABLE_FILE = "latency_table.parquet"
CHECK_FILE = "latency_check.json"  # the table's check on fresh networks before meta-training


def _device_rows(table: LatencyTable, c: Constraints) -> LatencyTable:
    """A given table's rows for the constraints' device: its only device of that kind (and,
    on a CPU, that thread count)."""
    kind = [d for d in table.devices if d.startswith(f"{c.device}:")]
    if c.device == "cpu":
        kind = [d for d in kind if f" x{c.threads} threads" in d]
    if len(kind) != 1:
        raise ValueError(
            f"constraints.latency_table: expected one {c.device} device"
            + (f" with {c.threads} threads" if c.device == "cpu" else "")
            + f" in the table, found {kind or 'none'} among {table.devices}"
        )
    return table.for_device(kind[0])


def latency_table(campaign: Campaign) -> LatencyTable:
    """The campaign's table: the one it names, or a fresh profile of its space."""
    c = campaign.constraints
    if c.latency_table:
        return _device_rows(LatencyTable.load(c.latency_table), c)
    if c.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "constraints.device: cuda, but this driver has no CUDA device; profile on the target with "
            "`metanas hw profile CAMPAIGN --device cuda --out TABLE` and set constraints.latency_table"
        )
    log.info("profiling the space's ops on %s for the latency table", device_fingerprint(c.device, c.threads))
    return profile(campaign.network_shape(), c.device, c.threads, c.batch)


def build_limits(campaign: Campaign, table: LatencyTable) -> tuple[CostLimit, ...]:
    c, shape = campaign.constraints, campaign.network_shape()
    limits = []
    if c.max_latency_ms is not None:
        limits.append(CostLimit(table.latency_cost(shape, c.batch), c.max_latency_ms, c.weight))
    if c.max_params is not None:
        cost = params_cost(shape.space, shape.image_size, shape.in_channels, shape.n_classes)
        limits.append(CostLimit(cost, float(c.max_params), c.weight))
    return tuple(limits)


def campaign_limits(campaign: Campaign, run_root: Path) -> tuple[CostLimit, ...]:
    """The campaign's limits, from the run directory when it holds them (a resume), else
    built now (a latency limit's table checked here first) and written there with the
    latency table and its check. None set: ()."""
    if campaign.constraints is None:
        return ()
    saved = run_root / LIMITS_FILE
    if saved.exists():
        return load_limits(run_root)
    table = latency_table(campaign)
    limits = build_limits(campaign, table)
    check = check_latency_table(campaign, table) if campaign.constraints.max_latency_ms else None
    run_root.mkdir(parents=True, exist_ok=True)
    table.save(run_root / TABLE_FILE)
    if check is not None:
        atomic_write_json(run_root / CHECK_FILE, check)
    atomic_write_json(saved, [limit.to_dict() for limit in limits])
    return limits


def check_latency_table(campaign: Campaign, table: LatencyTable) -> dict[str, Any] | None:
    """The table's rank correlation and error on fresh networks measured on this driver
    (None where it cannot measure the constraints' device). Below `TRUSTED_SPEARMAN` a
    one-line warning, or with `constraints.strict` a ValueError, before any work starts."""
    c, shape = campaign.constraints, campaign.network_shape()
    device = _measuring_device(c)
    if device is None:
        log.info("constraints.device %s: no such device here to check the latency table on", c.device)
        return None
    fresh = table.unseen_genotypes(shape, CHECK_NETWORKS, c.batch)
    check = check_table(table.latency_cost(shape, c.batch), shape, fresh, device, c.threads, c.batch)
    problem = check_problem(check)
    if problem:
        problem = (
            f"the latency table ({table.devices[0]}) {problem}; rerun `metanas hw profile` on this device"
        )
        if c.strict and not trusted(check):  # (a table off in scale only warns)
            raise ValueError(f"constraints.strict: {problem}")
        log.warning("%s", problem)
    return check


def load_limits(run_root: Path) -> tuple[CostLimit, ...]:
    """The limits a run directory keeps; () when its campaign has none."""
    path = run_root / LIMITS_FILE
    return tuple(CostLimit.from_dict(d) for d in json.loads(path.read_text())) if path.exists() else ()


def _measuring_device(c: Constraints) -> str | None:
    """Where this driver can measure the constraints' latency: their device, or None (a
    CUDA budget on a driver without a GPU: latency is then only predicted)."""
    return c.device if c.device == "cpu" or torch.cuda.is_available() else None


def _measure(
    shape: NetworkShape, genotypes: Sequence[tuple[str, ...]], c: Constraints
) -> dict[tuple, dict[str, float]]:
    device, unique = _measuring_device(c), list(dict.fromkeys(map(tuple, genotypes)))
    with torch_threads(c.threads):
        measured = shape.measure_many(unique, device or "cpu", c.batch)
    if device is None:  # parameters and FLOPs only; latency is predicted
        for m in measured:
            m["latency_ms"] = None
    return dict(zip(unique, measured, strict=True))


def _genotype_entry(g: tuple[str, ...], m: dict[str, Any], predicted: float, c: Any) -> dict[str, Any]:
    """One genotype's costs, predicted and measured, and whether it is within the limits."""
    lat = m["latency_ms"]
    within = (c.max_latency_ms is None or (lat if lat is not None else predicted) <= c.max_latency_ms) and (
        c.max_params is None or m["params"] <= c.max_params
    )
    return {
        "genotype": list(g),
        "predicted_latency_ms": round(predicted, 4),
        "latency_ms": None if lat is None else round(lat, 4),
        "params": int(m["params"]),
        "flops": int(m["flops"]),
        "within": bool(within),
    }


def hardware_summary(
    campaign: Campaign,
    run_root: Path,
    tests: Sequence[TestResult],
    genotype: tuple[str, ...],
    derived_accuracy: float | None,
) -> dict[str, Any]:
    """summary.json's `hardware`: every genotype the first evaluation's tasks derived (how
    many tasks, their mean accuracy with the supernet, predicted and measured latency,
    parameters, FLOPs, whether within the limits), the campaign's derived genotype, the
    share of tasks within the limits, and the Pareto front of accuracy against latency."""
    c, shape = campaign.constraints, campaign.network_shape()
    table = LatencyTable.load(run_root / TABLE_FILE).for_device()
    latency = table.latency_cost(shape, c.batch)
    limits = load_limits(run_root)
    by_genotype: dict[tuple, list[float]] = defaultdict(list)
    for t in tests:
        if t.evaluation == 0:
            by_genotype[tuple(t.genotype)].append(t.accuracy["metanas"])
    measured = _measure(shape, list(by_genotype) + [genotype], c)

    def entry(g: tuple[str, ...]) -> dict[str, Any]:
        return _genotype_entry(g, measured[g], latency.of(g), c)

    rows = []
    for g, accs in sorted(by_genotype.items(), key=lambda kv: -len(kv[1])):
        rows.append({**entry(g), "tasks": len(accs), "accuracy": round(sum(accs) / len(accs), 4)})
    points = [
        {
            "accuracy": r["accuracy"],
            "latency_ms": r["latency_ms"] if r["latency_ms"] is not None else r["predicted_latency_ms"],
        }
        for r in rows
    ]
    tasks = sum(r["tasks"] for r in rows)
    check = run_root / CHECK_FILE
    return {
        "device": table.devices[0],
        "measured_on": device_fingerprint(c.device, c.threads) if _measuring_device(c) else None,
        "table_check": json.loads(check.read_text()) if check.exists() else None,
        "batch": c.batch,
        "max_latency_ms": c.max_latency_ms,
        "max_params": c.max_params,
        "limits": [
            {"cost": limit.cost.name, "limit": limit.limit, "weight": limit.weight} for limit in limits
        ],
        "tasks_within": round(sum(r["tasks"] for r in rows if r["within"]) / max(tasks, 1), 4),
        "derived": {**entry(genotype), "accuracy": derived_accuracy},
        "genotypes": rows,
        "pareto": [
            rows[i]["genotype"] for i in pareto_front(points, {"accuracy": "max", "latency_ms": "min"})
        ],
    }
