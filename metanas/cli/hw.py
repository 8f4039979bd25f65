"""`metanas hw ...`: latency tables, what a campaign's architectures cost on a device."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from metanas.platform.config import ConfigError, load_campaign
from metanas.searchers.darts.latency_fit import (
    CALIBRATION_NETWORKS,
    CHECK_NETWORKS,
    TRUSTED_SPEARMAN,
    check_problem,
    trusted,
)


def add_commands(sub: argparse._SubParsersAction) -> None:
    hw = sub.add_parser("hw", help="latency tables: what a campaign's architectures cost on a device")
    hw_sub = hw.add_subparsers(dest="hw", required=True)
    prof = hw_sub.add_parser(
        "profile", help="measure every op of the campaign's space where it runs, and a few whole networks"
    )
    prof.add_argument("config", type=Path, help="the campaign file")
    prof.add_argument(
        "--out",
        type=Path,
        default=Path("latency.parquet"),
        help="the Parquet table; rows of other devices in it are kept (default latency.parquet)",
    )
    device_options(prof)
    prof.add_argument(
        "--networks",
        type=int,
        default=CALIBRATION_NETWORKS,
        help=f"whole networks measured to calibrate on (default {CALIBRATION_NETWORKS})",
    )
    prof.set_defaults(run=run)

    _add_check(hw_sub)

    pred = hw_sub.add_parser("predict", help="a genotype's predicted latency, parameters and FLOPs")
    pred.add_argument("config", type=Path, help="the campaign file")
    pred.add_argument(
        "--genotype",
        required=True,
        help="comma-separated op names, one per edge (as summary.json lists them)",
    )
    pred.add_argument(
        "--table", type=Path, default=Path("latency.parquet"), help="the table (default latency.parquet)"
    )
    pred.add_argument(
        "--device-name", help="which device of the table, when it holds several (see `hw profile`'s output)"
    )
    pred.add_argument(
        "--measure",
        action="store_true",
        help="also measure the network on this machine's CPU (the table's thread count)",
    )
    pred.add_argument("--json", action="store_true", help="print only the JSON result")
    pred.set_defaults(run=run)


def _add_check(hw_sub: argparse._SubParsersAction) -> None:
    check = hw_sub.add_parser(
        "check",
        help="how well a latency table ranks fresh networks measured on this machine now "
        f"(exit 1 below Spearman {TRUSTED_SPEARMAN})",
    )
    check.add_argument("config", type=Path, help="the campaign file")
    check.add_argument(
        "--table",
        type=Path,
        help="the table (default: the campaign's constraints.latency_table, else latency.parquet)",
    )
    check.add_argument("--device-name", help="which device of the table, when it holds several")
    check.add_argument(
        "--networks",
        type=int,
        default=CHECK_NETWORKS,
        help=f"fresh networks measured (default {CHECK_NETWORKS})",
    )
    check.add_argument("--json", action="store_true", help="print only the JSON result")
    check.set_defaults(run=run)


def device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads on a CPU (default 1, as a TaskWorker with one CPU)",
    )
    p.add_argument("--batch", type=int, default=1, help="images per forward pass (default 1)")


def check_device_options(args: argparse.Namespace) -> None:
    for name in ("threads", "batch", "networks"):
        if getattr(args, name, 1) < 1:
            raise ConfigError(f"--{name}: must be >= 1, got {getattr(args, name)}")
    if getattr(args, "device", "cpu") == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: this machine has no CUDA device")


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    check_device_options(args)
    campaign = load_campaign(args.config)
    shape = campaign.network_shape()
    from metanas.searchers.darts.latency import LatencyTable, profile

    if args.hw == "profile":
        table = profile(shape, args.device, args.threads, args.batch, args.networks, progress=_progress)
        path = table.save(args.out)
        ops = sum(r["kind"] == "op" for r in table.rows)
        timing = table.timing()
        print(
            f"{path}: {ops} op measurements and {args.networks} networks for device {table.devices[0]} "
            f"({timing['repeats']} timed blocks each, median noise {100 * timing['median_noise']:.1f}%)"
        )
        return 0
    if args.hw == "check":
        return _check(args, campaign, shape, LatencyTable)
    return _predict(args, campaign, shape, LatencyTable)


def _check(args, campaign, shape, table_cls) -> int:
    from metanas.searchers.darts.latency import check_table, threads_of

    path = args.table or Path(
        (campaign.constraints and campaign.constraints.latency_table) or "latency.parquet"
    )
    try:
        table = table_cls.load(path).for_device(args.device_name)
        cost = table.latency_cost(shape)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from None
    fingerprint = table.devices[0]
    device = "cuda" if fingerprint.startswith("cuda:") else "cpu"
    if device == "cuda":
        check_device_options(argparse.Namespace(device="cuda"))
    fresh = table.unseen_genotypes(shape, args.networks)
    result = {
        "table": str(path),
        "table_device": fingerprint,
        **check_table(cost, shape, fresh, device, threads_of(fingerprint), table.rows[0]["batch"]),
    }
    result["trusted"] = trusted(result)
    if args.json:
        print(json.dumps(result))
    else:
        print("\n".join(f"{k}: {v}" for k, v in result.items()))
        problem = check_problem(result)
        if problem:
            print(f"the latency table {problem}; rerun `metanas hw profile` here")
    return 0 if result["trusted"] else 1


def _predict(args, campaign, shape, table_cls) -> int:
    from metanas.searchers.darts.cost import params_cost
    from metanas.searchers.darts.latency import threads_of

    genotype = tuple(op.strip() for op in args.genotype.split(","))
    try:
        shape.space.genotype_to_config(genotype)
    except ValueError as err:
        raise ConfigError(f"--genotype: {err}") from None
    try:
        table = table_cls.load(args.table).for_device(args.device_name)
        latency = table.latency_cost(shape)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from None
    params = params_cost(shape.space, shape.image_size, shape.in_channels, shape.n_classes)
    result = {
        "device": table.devices[0],
        "genotype": list(genotype),
        "predicted_latency_ms": round(latency.of(genotype), 4),
        "params": int(params.of(genotype)),
    }
    if args.measure:
        from metanas._util.threads import torch_threads

        with torch_threads(threads_of(table.devices[0])):
            measured = shape.measure(genotype, "cpu", table.rows[0]["batch"])
        result.update(latency_ms=round(measured["latency_ms"], 4), flops=measured["flops"])
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0
