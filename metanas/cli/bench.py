"""`metanas bench ...`: every benchmark of the README, each a thin call into `metanas.bench`
(arguments checked here first, so a bad one is a one-line error before any work)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from metanas.platform.config import ConfigError, demo_config_path, load_campaign


def add_commands(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks (numbers for the README)")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    _add_cluster_benches(bench_sub)
    _add_learner(bench_sub)
    _add_step(bench_sub)
    _add_warmstart(bench_sub)
    _add_memory_benches(bench_sub)
    _add_latency(bench_sub)


def _json_flag(p: argparse.ArgumentParser, text: str = "print only the JSON result") -> None:
    p.add_argument("--json", action="store_true", help=text)


def _print(result: dict[str, Any], as_json: bool) -> int:
    print(json.dumps(result) if as_json else json.dumps(result, indent=2))
    return 0


def _positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")


def _add_cluster_benches(bench_sub: argparse._SubParsersAction) -> None:
    scaling = bench_sub.add_parser(
        "scaling",
        help="meta-training throughput with 1 and 2 workers; with --nodes, the MetaLearner's load on "
        "simulated clusters",
    )
    scaling.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="meta-iterations per measurement (default 12; with --nodes 40, zero-cost tasks)",
    )
    scaling.add_argument(
        "--nodes",
        type=int,
        default=None,
        help="simulated nodes (2 workers each): runs at 1, 2, 4, ... N nodes, flat against node "
        "aggregation, a node removed at N, and the capacity model checked",
    )
    _json_flag(scaling)
    scaling.set_defaults(run=_scaling)
    driver = bench_sub.add_parser(
        "driver-memory", help="the driver's resident memory over a long campaign of tiny tasks"
    )
    driver.add_argument("--tasks", type=int, default=10_000, help="meta-training tasks (default 10000)")
    _json_flag(driver)
    driver.set_defaults(run=_driver_memory)


def _add_learner(bench_sub: argparse._SubParsersAction) -> None:
    from metanas.bench.learner import SIZES

    learner = bench_sub.add_parser(
        "learner", help="updates per second one MetaLearner absorbs, against the limit"
    )
    learner.add_argument("--sizes", default=",".join(SIZES), help=f"supernets (default {','.join(SIZES)})")
    learner.add_argument("--modes", default="async,sync", help="update modes (default async,sync)")
    learner.add_argument(
        "--seconds", type=float, default=4.0, help="measured seconds per size and mode (default 4)"
    )
    learner.add_argument(
        "--per-call",
        default="1,8",
        help="async updates per call: 1 as workers send them, K as a node aggregates K (default 1,8)",
    )
    _json_flag(learner)
    learner.set_defaults(run=_learner)


def _learner(args: argparse.Namespace) -> int:
    from metanas.bench.learner import SIZES, bench_learner

    sizes, modes = tuple(args.sizes.split(",")), tuple(args.modes.split(","))
    if unknown := [s for s in sizes if s not in SIZES]:
        raise ConfigError(f"--sizes: unknown {unknown}; choose from {', '.join(SIZES)}")
    if unknown := [m for m in modes if m not in ("async", "sync")]:
        raise ConfigError(f"--modes: unknown {unknown}; choose from async, sync")
    if args.seconds <= 0:
        raise ConfigError(f"--seconds: must be > 0, got {args.seconds}")
    try:
        per_call = tuple(int(k) for k in args.per_call.split(","))
    except ValueError:
        per_call = ()
    if not per_call or min(per_call) < 1:
        raise ConfigError(f"--per-call: comma-separated whole numbers >= 1, got {args.per_call!r}")
    return _print(bench_learner(sizes, modes, args.seconds, per_call), args.json)


def _scaling(args: argparse.Namespace) -> int:
    for name in ("iterations", "nodes"):
        if getattr(args, name) is not None:
            _positive(args, name)
    campaign = load_campaign(demo_config_path())
    if args.nodes is not None:
        from metanas.bench.nodes import bench_nodes

        return _print(bench_nodes(campaign, args.nodes, args.iterations or 40), args.json)
    from metanas.bench.scaling import bench_scaling

    return _print(bench_scaling(campaign, args.iterations or 12), args.json)


def _driver_memory(args: argparse.Namespace) -> int:
    if args.tasks < 100:
        raise ConfigError(f"--tasks: must be >= 100, got {args.tasks}")
    from metanas.bench.driver_memory import bench_driver_memory

    return _print(bench_driver_memory(args.tasks), args.json)


def _add_step(bench_sub: argparse._SubParsersAction) -> None:
    step = bench_sub.add_parser(
        "step", help="the supernet's training step with and without the speed settings, side by side"
    )
    step.add_argument("--image-size", type=int, default=28, help="default 28 (Omniglot)")
    step.add_argument("--batch", type=int, default=25, help="default 25")
    step.add_argument("--channels", type=int, default=16, help="default 16")
    step.add_argument("--cells", type=int, default=3, help="default 3")
    step.add_argument("--nodes", type=int, default=3, help="default 3")
    step.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    step.add_argument("--rounds", type=int, default=6, help="interleaved rounds of 3 steps each (default 6)")
    step.add_argument(
        "--partial-channels",
        type=int,
        default=1,
        metavar="K",
        help="PC-DARTS: mix 1/K of the channels on each edge (default 1: all); "
        "K > 1 also times K = 1 alongside",
    )
    _json_flag(step)
    step.set_defaults(run=_step)


def _step(args: argparse.Namespace) -> int:
    _positive(
        args, "image_size", "batch", "channels", "cells", "nodes", "threads", "rounds", "partial_channels"
    )
    if args.channels % args.partial_channels:
        raise ConfigError(
            f"--partial-channels: must divide --channels ({args.channels}), got {args.partial_channels}"
        )
    from metanas.bench.step import bench_step

    result = bench_step(
        args.image_size,
        args.batch,
        args.channels,
        args.cells,
        args.nodes,
        args.threads,
        args.rounds,
        partial_channels=args.partial_channels,
    )
    return _print(result, args.json)


def _add_warmstart(bench_sub: argparse._SubParsersAction) -> None:
    warm = bench_sub.add_parser("warmstart", help="leave-one-task-out warm-start benchmark on lookup tables")
    warm.add_argument("--budget", type=int, default=50, help="evaluations per search (default 50)")
    warm.add_argument(
        "--seeds", type=int, default=5, help="seeds per task (default 5; 20 for tight intervals)"
    )
    warm.add_argument("--tables", help="comma-separated subset of the tables (default: all)")
    warm.add_argument("--workers", type=int, help="processes (default: one per CPU)")
    warm.add_argument("--plot", type=Path, help="write the regret curves to this PNG (default: no file)")
    warm.add_argument(
        "--objectives",
        help="two comma-separated metrics, e.g. val_acc,latency: the multi-objective "
        "benchmark (hypervolume regret on NAS-Bench-201) instead of the single-score one",
    )
    _json_flag(warm, "print only the JSON result (progress goes to stderr)")
    warm.set_defaults(run=_warmstart)


def _warmstart(args: argparse.Namespace) -> int:
    if args.budget < 10 or args.seeds < 1:
        raise ConfigError(f"--budget must be >= 10 and --seeds >= 1, got {args.budget} and {args.seeds}")
    if args.objectives:
        return _multi_objective(args)
    from metanas.bench.warmstart import TABLES, bench_warmstart

    tables = _tables(args.tables, TABLES, "choose from")
    result = bench_warmstart(
        budget=args.budget, seeds=args.seeds, tables=tables, progress=True, workers=args.workers
    )
    return _print_curves(args, result, "mean normalised regret")


def _multi_objective(args: argparse.Namespace) -> int:
    from metanas.bench.multi_objective import MO_TABLES, bench_multi_objective, parse_objectives

    try:
        objectives = parse_objectives(args.objectives)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    tables = _tables(
        args.tables, MO_TABLES, "with --objectives, choose from", " (tables with several metrics)"
    )
    result = bench_multi_objective(
        objectives, tables, args.budget, args.seeds, progress=True, workers=args.workers
    )
    return _print_curves(args, result, "mean hypervolume regret")


def _tables(given: str | None, known: tuple[str, ...], choose: str, why: str = "") -> tuple[str, ...]:
    tables = tuple(given.split(",")) if given else known
    unknown = [t for t in tables if t not in known]
    if unknown:
        raise ConfigError(f"--tables: unknown {unknown}; {choose} {', '.join(known)}{why}")
    return tables


def _print_curves(args: argparse.Namespace, result: dict[str, Any], ylabel: str) -> int:
    from metanas.bench.warmstart import plot_curves

    if args.plot:
        plot_curves(result, str(args.plot), ylabel=ylabel)
    result.pop("curves")
    _print(result, args.json)
    if args.plot and not args.json:
        print(f"regret curves: {args.plot}")
    return 0


def _add_memory_benches(bench_sub: argparse._SubParsersAction) -> None:
    bm = bench_sub.add_parser("memory", help="memory store throughput, latency, recall and reload time")
    bm.add_argument("--records", type=int, default=100_000, help="synthetic records (default 100000)")
    bm.add_argument("--dim", type=int, default=64, help="embedding dimension (default 64)")
    bm.add_argument(
        "--data",
        choices=["clustered", "overlapping", "hard"],
        default="clustered",
        help="embeddings: families far apart, overlapping, or overlapping more (hard); default clustered",
    )
    _json_flag(bm)
    bm.set_defaults(run=_memory)
    bs = bench_sub.add_parser(
        "sampler", help="MemorySampler's cost per trial against Optuna's TPE, side by side"
    )
    bs.add_argument("--tasks", type=int, default=64, help="past studies in the memory (default 64)")
    bs.add_argument("--trials", type=int, default=50, help="trials per study (default 50; more than 20)")
    bs.add_argument("--repeats", type=int, default=3, help="studies each way (default 3)")
    _json_flag(bs)
    bs.set_defaults(run=_sampler)


def _memory(args: argparse.Namespace) -> int:
    if args.records < 100:
        raise ConfigError(f"--records: must be >= 100, got {args.records}")
    from metanas.bench.memory import bench_memory

    return _print(bench_memory(args.records, args.data, dim=args.dim), args.json)


def _sampler(args: argparse.Namespace) -> int:
    from metanas.bench.sampler import HANDOFF, bench_sampler

    if args.tasks < 1 or args.trials <= HANDOFF or args.repeats < 1:
        raise ConfigError(
            f"--tasks >= 1, --trials > {HANDOFF} and --repeats >= 1, got {args.tasks}, {args.trials}, "
            f"{args.repeats}"
        )
    return _print(bench_sampler(args.tasks, args.trials, args.repeats), args.json)


def _add_latency(bench_sub: argparse._SubParsersAction) -> None:
    from metanas.cli.hw import device_options

    bench = bench_sub.add_parser(
        "latency", help="latency-table prediction against measured latency on random derived networks"
    )
    bench.add_argument("config", type=Path, help="the campaign file")
    bench.add_argument(
        "--networks", type=int, default=50, help="random derived networks measured (default 50)"
    )
    device_options(bench)
    _json_flag(bench, "print only the JSON result (progress goes to stderr)")
    bench.set_defaults(run=_latency)


def _latency(args: argparse.Namespace) -> int:
    from metanas.bench.latency import bench_latency
    from metanas.cli.hw import check_device_options

    check_device_options(args)
    shape = load_campaign(args.config).network_shape()
    result = bench_latency(shape, args.networks, args.device, args.threads, args.batch, progress=_progress)
    return _print(result, args.json)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
