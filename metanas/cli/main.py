"""The `metanas` command line. Configs are validated here, before Ray starts."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from metanas.platform.config import ConfigError, demo_config_path, load_campaign

log = logging.getLogger("metanas")


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
        campaign = campaign.model_copy(
            update={"workers": campaign.workers.model_copy(update={"count": workers})}
        )
    from metanas.platform.campaign import run_campaign
    from metanas.platform.campaign_outputs import results_table

    summary = run_campaign(campaign, out, resume=resume, address=address)
    print(results_table(summary))
    curves = [out / name for name in ("meta_train.png", "validation.png") if (out / name).exists()]
    print(f"summary: {out / 'summary.json'}  curves: {'  '.join(map(str, curves))}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    if (args.run_dir is None) == (args.memory is None) or (args.memory is None) != (args.key is None):
        raise ConfigError("explain: give a run directory, or --memory MEM --key KEY (one of the two)")
    if args.memory is not None:
        from metanas.platform.explain_search import explain_record

        print(explain_record(args.memory, args.key, args.out))
        return 0
    from metanas.platform.explain_campaign import write_explain

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

    from metanas.cli import bench, hw, memory

    try:
        __version__ = version("metanas")
    except PackageNotFoundError:  # (run from a checkout that was never installed)
        __version__ = "unknown"
    parser = OneLineParser(prog="metanas", description="Meta-learning-guided architecture search on Ray.")
    parser.add_argument("--version", action="version", version=f"metanas {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_campaign_commands(sub)
    _add_job_commands(sub)
    bench.add_commands(sub)
    _add_explain(sub)
    memory.add_commands(sub)
    hw.add_commands(sub)
    return parser


def _add_campaign_commands(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a campaign from a YAML file")
    run.add_argument("config", type=Path, help="the campaign file (examples/*.yaml)")
    run.add_argument("--out", type=Path, help="output directory")
    run.add_argument(
        "--check", action="store_true", help="only validate the campaign file and its data, then exit"
    )
    run.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    run.add_argument("--address", help="join this Ray cluster instead of starting an embedded one")
    run.add_argument("--workers", type=int, help="override workers.count")
    run.set_defaults(run=_run_command)
    demo = sub.add_parser("demo", help="run the demo campaign (5-way 1-shot digits)")
    demo.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="output directory (default runs/demo)"
    )
    demo.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    demo.add_argument("--workers", type=int, help="override workers.count")
    demo.set_defaults(run=lambda args: _run(demo_config_path(), args.out, args.resume, None, args.workers))


def _run_command(args: argparse.Namespace) -> int:
    if args.check:
        return _check(args.config)
    return _run(args.config, args.out, args.resume, args.address, args.workers)


def _add_job_commands(sub: argparse._SubParsersAction) -> None:
    submit = sub.add_parser("submit", help="submit a campaign to a Ray cluster as a Ray job")
    submit.add_argument("config", type=Path, help="the campaign file, validated here before it is uploaded")
    submit.add_argument("--address", required=True, help="the job server, e.g. http://127.0.0.1:8265")
    submit.add_argument(
        "--out",
        default="metanas-runs/campaign",
        help="output directory on the cluster (default metanas-runs/campaign)",
    )
    submit.add_argument("--gpus", type=float, default=0.0, help="GPUs for the driver (entrypoint)")
    submit.add_argument("--no-wait", action="store_true", help="return once submitted")
    submit.set_defaults(run=_jobs)
    for name, text in (("status", "a job's status"), ("logs", "a job's logs"), ("stop", "stop a job")):
        p = sub.add_parser(name, help=text)
        p.add_argument("job_id", help="the id `metanas submit` printed")
        p.add_argument("--address", required=True, help="the job server, e.g. http://127.0.0.1:8265")
        p.set_defaults(run=_jobs)


def _add_explain(sub: argparse._SubParsersAction) -> None:
    explain = sub.add_parser(
        "explain",
        help="a campaign's report.html (curves, alpha, the derived cell, latency, "
        "workers), or why a stored search evaluated what it did (--memory, --key)",
    )
    explain.add_argument("run_dir", type=Path, nargs="?", help="a finished campaign's output directory")
    explain.add_argument(
        "--memory", type=Path, help="a memory directory: explain its stored search --key instead"
    )
    explain.add_argument("--key", help="the stored search's key (see `metanas memory ls`)")
    explain.add_argument(
        "--out",
        type=Path,
        help="where to write the page (default RUN_DIR/report.html, or search_report.html here)",
    )
    explain.set_defaults(run=_explain)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader reports every CPU probe
    try:
        return args.run(args)
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
            print(
                f"metanas: {signalled}; rerun with --resume to continue from the last checkpoint",
                file=sys.stderr,
            )
        else:
            print(f"metanas: {err or signalled}", file=sys.stderr)  # (a search says what it kept)
        return 143 if signalled == "terminated" else 130


if __name__ == "__main__":
    sys.exit(main())
