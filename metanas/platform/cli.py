"""The `metanas` command line. Configs are validated here, before Ray starts."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import resources
from pathlib import Path

from metanas.platform.config import ConfigError, load_campaign

log = logging.getLogger("metanas")


def demo_config_path() -> Path:
    return Path(str(resources.files("metanas.platform").joinpath("demo_campaign.yaml")))


def _check(config: Path) -> int:
    """The campaign file and the data it names, checked as `run` checks them, without Ray."""
    from metanas.platform.data_check import check_campaign_data

    campaign = load_campaign(config)
    check_campaign_data(campaign)
    print(f"{config}: a valid campaign ({campaign.name!r}; its data checked)")
    return 0


def _run(config: Path, out: Path | None, resume: bool, address: str | None, workers: int | None) -> int:
    campaign = load_campaign(config)  # raises ConfigError before anything heavy starts
    if out is None:
        raise ConfigError("run: --out is required (or --check, to only validate the campaign)")
    if workers is not None:
        if workers < 1:
            raise ConfigError(f"--workers: must be >= 1, got {workers}")
        campaign = campaign.model_copy(update={"workers": campaign.workers.model_copy(update={"count": workers})})
    from metanas.platform.campaign import run_campaign
    from metanas.platform.report import results_table

    summary = run_campaign(campaign, out, resume=resume, address=address)
    print(results_table(summary))
    curves = [out / name for name in ("meta_train.png", "validation.png") if (out / name).exists()]
    print(f"summary: {out / 'summary.json'}  curves: {'  '.join(map(str, curves))}")
    return 0


def _bench_scaling(iterations: int, as_json: bool) -> int:
    import json

    if iterations < 1:
        raise ConfigError(f"--iterations: must be >= 1, got {iterations}")
    from metanas.cluster.bench_scaling import bench_scaling

    result = bench_scaling(load_campaign(demo_config_path()), iterations)
    print(json.dumps(result) if as_json else json.dumps(result, indent=2))
    return 0


def _bench_warmstart(args: argparse.Namespace) -> int:
    import json

    from metanas.memory.bench_warmstart import TABLES, bench_warmstart, plot_curves

    if args.budget < 10 or args.seeds < 1:
        raise ConfigError(f"--budget must be >= 10 and --seeds >= 1, got {args.budget} and {args.seeds}")
    if args.objectives:
        return _bench_multi_objective(args)
    tables = tuple(args.tables.split(",")) if args.tables else TABLES
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise ConfigError(f"--tables: unknown {unknown}; choose from {', '.join(TABLES)}")
    result = bench_warmstart(budget=args.budget, seeds=args.seeds, tables=tables, progress=True, workers=args.workers)
    if args.plot:
        plot_curves(result, str(args.plot))
    result.pop("curves")
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    if args.plot and not args.json:
        print(f"regret curves: {args.plot}")
    return 0


def _bench_driver_memory(args: argparse.Namespace) -> int:
    import json

    if args.tasks < 100:
        raise ConfigError(f"--tasks: must be >= 100, got {args.tasks}")
    from metanas.cluster.bench_driver_memory import bench_driver_memory

    result = bench_driver_memory(args.tasks)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


def _bench_multi_objective(args: argparse.Namespace) -> int:
    import json

    from metanas.memory.bench_multiobjective import MO_TABLES, bench_multi_objective, parse_objectives
    from metanas.memory.bench_warmstart import plot_curves

    try:
        objectives = parse_objectives(args.objectives)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    tables = tuple(args.tables.split(",")) if args.tables else MO_TABLES
    unknown = [t for t in tables if t not in MO_TABLES]
    if unknown:
        raise ConfigError(f"--tables: with --objectives, choose from {', '.join(MO_TABLES)} (tables with several metrics); got {unknown}")
    result = bench_multi_objective(objectives, args.budget, args.seeds, tables, progress=True, workers=args.workers)
    if args.plot:
        plot_curves(result, str(args.plot), ylabel="mean hypervolume regret")
    result.pop("curves")
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


def _bench_step(args: argparse.Namespace) -> int:
    import json

    for name in ("image_size", "batch", "channels", "cells", "nodes", "threads", "rounds", "partial_channels"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")
    if args.channels % args.partial_channels:
        raise ConfigError(f"--partial-channels: must divide --channels ({args.channels}), got {args.partial_channels}")
    from metanas.searchers.darts.bench_step import bench_step

    result = bench_step(
        args.image_size, args.batch, args.channels, args.cells, args.nodes, args.threads, args.rounds,
        partial_channels=args.partial_channels,
    )
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


def _explain(args: argparse.Namespace) -> int:
    if (args.run_dir is None) == (args.memory is None) or (args.memory is None) != (args.key is None):
        raise ConfigError("explain: give a run directory, or --memory MEM --key KEY (one of the two)")
    if args.memory is not None:
        from metanas.platform.explain_search import explain_record

        print(explain_record(args.memory, args.key, args.out))
        return 0
    from metanas.platform.explain import write_explain

    print(write_explain(args.run_dir, args.out))
    return 0


def _jobs(args: argparse.Namespace) -> int:
    from metanas.cluster import jobs

    if args.command == "submit":
        load_campaign(args.config)  # a typo fails here, not on the cluster
    try:
        jobs.check_address(args.address)
        jobs.client(args.address)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if args.command == "submit":
        job_id, state = jobs.submit(args.config, args.address, args.out, args.gpus, wait=not args.no_wait)
        print(f"{job_id}\t{state}")
        return 0 if state in ("SUCCEEDED", "PENDING", "RUNNING") else 1
    if args.command == "status":
        print(jobs.status(args.job_id, args.address))
    elif args.command == "logs":
        print(jobs.logs(args.job_id, args.address), end="")
    else:
        print("stopped" if jobs.stop(args.job_id, args.address) else "already finished")
    return 0


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line on stderr and exit code 2, like every other user error
    (argparse would print the usage block first); `--help` shows it all."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("metanas")
    except PackageNotFoundError:  # (run from a checkout that was never installed)
        __version__ = "unknown"
    parser = OneLineParser(prog="metanas", description="Meta-learning-guided architecture search on Ray.")
    parser.add_argument("--version", action="version", version=f"metanas {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a campaign from a YAML file")
    run.add_argument("config", type=Path, help="the campaign file (examples/*.yaml)")
    run.add_argument("--out", type=Path, help="output directory")
    run.add_argument("--check", action="store_true", help="only validate the campaign file and its data, then exit")
    run.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    run.add_argument("--address", help="join this Ray cluster instead of starting an embedded one")
    run.add_argument("--workers", type=int, help="override workers.count")

    submit = sub.add_parser("submit", help="submit a campaign to a Ray cluster as a Ray job")
    submit.add_argument("config", type=Path, help="the campaign file, validated here before it is uploaded")
    submit.add_argument("--address", required=True, help="the job server, e.g. http://127.0.0.1:8265")
    submit.add_argument("--out", default="metanas-runs/campaign", help="output directory on the cluster (default metanas-runs/campaign)")
    submit.add_argument("--gpus", type=float, default=0.0, help="GPUs for the driver (entrypoint)")
    submit.add_argument("--no-wait", action="store_true", help="return once submitted")
    for name, text in (("status", "a job's status"), ("logs", "a job's logs"), ("stop", "stop a job")):
        p = sub.add_parser(name, help=text)
        p.add_argument("job_id", help="the id `metanas submit` printed")
        p.add_argument("--address", required=True, help="the job server, e.g. http://127.0.0.1:8265")

    demo = sub.add_parser("demo", help="run the demo campaign (5-way 1-shot digits)")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory (default runs/demo)")
    demo.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    demo.add_argument("--workers", type=int, help="override workers.count")

    bench = sub.add_parser("bench", help="benchmarks (numbers for the README)")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    scaling = bench_sub.add_parser("scaling", help="meta-training throughput with 1 and 2 workers")
    scaling.add_argument("--iterations", type=int, default=12, help="meta-iterations per measurement (default 12)")
    scaling.add_argument("--json", action="store_true", help="print only the JSON result")

    step = bench_sub.add_parser("step", help="the supernet's training step with and without the speed settings, side by side")
    step.add_argument("--image-size", type=int, default=28, help="default 28 (Omniglot)")
    step.add_argument("--batch", type=int, default=25, help="default 25")
    step.add_argument("--channels", type=int, default=16, help="default 16")
    step.add_argument("--cells", type=int, default=3, help="default 3")
    step.add_argument("--nodes", type=int, default=3, help="default 3")
    step.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    step.add_argument("--rounds", type=int, default=6, help="interleaved rounds of 3 steps each (default 6)")
    step.add_argument(
        "--partial-channels", type=int, default=1, metavar="K",
        help="PC-DARTS: mix 1/K of the channels on each edge (default 1: all); K > 1 also times K = 1 alongside",
    )
    step.add_argument("--json", action="store_true", help="print only the JSON result")

    driver = bench_sub.add_parser("driver-memory", help="the driver's resident memory over a long campaign of tiny tasks")
    driver.add_argument("--tasks", type=int, default=10_000, help="meta-training tasks (default 10000)")
    driver.add_argument("--json", action="store_true", help="print only the JSON result")

    warm = bench_sub.add_parser("warmstart", help="leave-one-task-out warm-start benchmark on lookup tables")
    warm.add_argument("--budget", type=int, default=50, help="evaluations per search (default 50)")
    warm.add_argument("--seeds", type=int, default=5, help="seeds per task (default 5; 20 for tight intervals)")
    warm.add_argument("--tables", help="comma-separated subset of the tables (default: all)")
    warm.add_argument("--workers", type=int, help="processes (default: one per CPU)")
    warm.add_argument("--plot", type=Path, help="write the regret curves to this PNG (default: no file)")
    warm.add_argument("--objectives", help="two comma-separated metrics, e.g. val_acc,latency: the multi-objective "
                      "benchmark (hypervolume regret on NAS-Bench-201) instead of the single-score one")
    warm.add_argument("--json", action="store_true", help="print only the JSON result (progress goes to stderr)")

    explain = sub.add_parser("explain", help="a campaign's report.html (curves, alpha, the derived cell, latency, "
                             "workers), or why a stored search evaluated what it did (--memory, --key)")
    explain.add_argument("run_dir", type=Path, nargs="?", help="a finished campaign's output directory")
    explain.add_argument("--memory", type=Path, help="a memory directory: explain its stored search --key instead")
    explain.add_argument("--key", help="the stored search's key (see `metanas memory ls`)")
    explain.add_argument("--out", type=Path,
                         help="where to write the page (default RUN_DIR/report.html, or search_report.html here)")

    from metanas.platform import cli_hw, cli_memory

    cli_memory.add_commands(sub)
    cli_hw.add_commands(sub, bench_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from metanas.platform import cli_hw, cli_memory

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader reports every CPU probe
    try:
        if args.command == "run" and args.check:
            return _check(args.config)
        if args.command == "run":
            return _run(args.config, args.out, args.resume, args.address, args.workers)
        if args.command == "demo":
            return _run(demo_config_path(), args.out, args.resume, None, args.workers)
        if args.command == "explain":
            return _explain(args)
        if args.command in ("submit", "status", "logs", "stop"):
            return _jobs(args)
        if args.command == "bench" and args.bench == "scaling":
            return _bench_scaling(args.iterations, args.json)
        if args.command == "bench" and args.bench == "step":
            return _bench_step(args)
        if args.command == "bench" and args.bench == "warmstart":
            return _bench_warmstart(args)
        if args.command == "bench" and args.bench == "driver-memory":
            return _bench_driver_memory(args)
        if args.command == "hw" or (args.command == "bench" and args.bench == "latency"):
            return cli_hw.run(args)
        return cli_memory.run(args)
    except ConfigError as err:
        print(f"metanas: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"metanas: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `metanas memory show ... | head`: the reader has gone, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ConnectionError as err:  # a cluster that is not there (after BrokenPipeError, one of its kind)
        print(f"metanas: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        signalled = "terminated" if type(err).__name__ == "Terminated" else "interrupted"
        if args.command in ("run", "demo"):
            print(f"metanas: {signalled}; rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        else:
            print(f"metanas: {err or signalled}", file=sys.stderr)  # (a search says what it kept)
        return 143 if signalled == "terminated" else 130


if __name__ == "__main__":
    sys.exit(main())
