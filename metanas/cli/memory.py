"""`metanas memory ...`, `metanas search ...` and `metanas predict ...`: the task memory
from the command line (built-in lookup-table tasks name their search space)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from metanas.platform.config import ConfigError


def add_commands(sub: argparse._SubParsersAction) -> None:
    from metanas.memory import policies

    mem = sub.add_parser("memory", help="inspect a task memory directory")
    msub = mem.add_subparsers(dest="memory_command", required=True)
    for name, text in (("ls", "list records"), ("stats", "counts per family, space and embedder")):
        p = msub.add_parser(name, help=text)
        p.add_argument("dir", type=Path, help="the memory directory")
    show = msub.add_parser("show", help="one record, as JSON")
    show.add_argument("dir", type=Path, help="the memory directory")
    show.add_argument("key", help="the record's key (see `memory ls`)")
    query = msub.add_parser("query", help="the records nearest to a stored record's task")
    query.add_argument("dir", type=Path, help="the memory directory")
    query.add_argument("key", help="the record whose embedding is the query")
    query.add_argument("-k", type=int, default=5, help="how many neighbours (default 5)")
    compact = msub.add_parser(
        "compact", help="rewrite every record in one part of the current schema (replaced records go)"
    )
    compact.add_argument("dir", type=Path, help="the memory directory")
    export = msub.add_parser("export", help="write every record to one Parquet file")
    export.add_argument("dir", type=Path, help="the memory directory")
    export.add_argument("out", type=Path, help="the Parquet file to write (must not exist)")
    mem.set_defaults(run=_memory_command)

    search = sub.add_parser("search", help="search a built-in benchmark task, warm-started from a memory")
    search.add_argument(
        "task", help="TABLE/DATASET, e.g. hpobench/car, hpolib/protein_structure or nasbench201/cifar10"
    )
    search.add_argument("--memory", type=Path, required=True, help="memory directory (created if missing)")
    search.add_argument("--budget", type=int, default=50, help="evaluations (default 50)")
    search.add_argument(
        "--searcher", default="optuna", choices=["optuna", "tune", "random"], help="default optuna"
    )
    search.add_argument(
        "--warm-start",
        default=policies.DEFAULT,
        choices=policies.SINGLE_OBJECTIVE,
        help=f"default {policies.DEFAULT}",
    )
    search.add_argument("--seed", type=int, default=0, help="default 0")
    search.add_argument(
        "--storage",
        help="also record the study in this Optuna storage (e.g. sqlite:///searches.db) "
        "for optuna-dashboard; searcher optuna only",
    )
    search.set_defaults(run=_search)

    predict = sub.add_parser("predict", help="the memory's zero-shot proposals for a built-in benchmark task")
    predict.add_argument("task", help="TABLE/DATASET, as for `metanas search` (its own records are left out)")
    predict.add_argument("--memory", type=Path, required=True, help="memory directory")
    predict.add_argument("-n", type=int, default=5, help="how many configs (default 5)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    predict.set_defaults(run=_predict)


def _open(path: Path):
    """An existing memory, read as it is: nothing is created in a directory that is not one."""
    from metanas.memory.store import MemoryStore

    if not path.is_dir():
        raise ConfigError(f"memory directory {str(path)!r} does not exist")
    if not (path / "parts").is_dir():
        raise ConfigError(f"{str(path)!r} is not a memory directory (no parts/)")
    return MemoryStore(path)


def _record_json(record) -> dict:
    return {
        "key": record.key,
        "task_id": record.task_id,
        "family": record.family,
        "embedder": record.embedder,
        "space_signature": record.space_signature,
        "best_score": record.best_score,
        "best_config": record.best_config,
        "searcher": record.searcher,
        "campaign_id": record.campaign_id,
        "trials": len(record.trials),
    }


def _memory_command(args: argparse.Namespace) -> int:
    store = _open(args.dir)
    if args.memory_command == "ls":
        for r in store.records():
            print(f"{r.key}\t{r.family}\t{r.searcher}\t{r.best_score:.4f}\t{len(r.trials)} trials")
    elif args.memory_command == "stats":
        print(json.dumps(store.stats(), indent=2))
    elif args.memory_command == "show":
        if args.key not in store:
            raise ConfigError(f"no record with key {args.key!r} in {args.dir}")
        print(
            json.dumps(_record_json(store.get(args.key)) | {"trials": store.get(args.key).trials}, indent=2)
        )
    elif args.memory_command == "query":
        if args.key not in store:
            raise ConfigError(f"no record with key {args.key!r} in {args.dir}")
        if args.k < 1:
            raise ConfigError(f"-k: must be >= 1, got {args.k}")
        r = store.get(args.key)
        for hit, sim in store.nearest(r.embedding, args.k + 1, r.space_signature, r.embedder):
            if hit.key != r.key:
                print(f"{sim:.4f}\t{hit.key}\t{hit.family}\t{hit.best_score:.4f}")
    elif args.memory_command == "compact":
        removed = store.compact()
        print(f"{len(store)} records in one part ({removed} parts before)")
    elif args.memory_command == "export":
        if args.out.exists():
            raise ConfigError(f"{str(args.out)!r} already exists; name a new file")
        if not args.out.parent.is_dir():
            raise ConfigError(f"{str(args.out.parent)!r} does not exist")
        store.export(args.out)
        print(f"{len(store)} records -> {args.out}")
    return 0


def _table_task(name: str):
    """A built-in lookup-table task by TABLE/DATASET name."""
    from metanas.platform.tables import bench_classes, load_table

    table, _, dataset = name.partition("/")
    classes = bench_classes()
    if table not in classes or dataset not in classes[table].available_dataset_names:
        known = [f"{t}/{d}" for t, c in classes.items() for d in c.available_dataset_names]
        raise ConfigError(f"task: unknown {name!r}; choose one of {', '.join(known)}")
    return load_table(classes[table], dataset), table


def _search(args: argparse.Namespace) -> int:
    from metanas.platform.search import search

    if args.budget < 1:
        raise ConfigError(f"--budget: must be >= 1, got {args.budget}")
    if args.seed < 0:
        raise ConfigError(f"--seed: must be >= 0, got {args.seed}")
    from metanas.memory.store import check_memory_dir

    task, table = _table_task(args.task)
    try:
        check_memory_dir(args.memory)  # (a file, or a folder of other things, is refused before any work)
    except ValueError as err:
        raise ConfigError(f"--{err}") from None
    result = search(
        task.objective(),
        task.space,
        task_id=args.task,
        memory=args.memory,
        budget=args.budget,
        searcher=args.searcher,
        warm_start=args.warm_start,
        family=table,
        seed=args.seed,
        storage=args.storage,
    )
    best = result.best
    print(
        json.dumps(
            {
                "task": args.task,
                "best_score": best.score,
                "best_config": best.config,
                "normalised_regret": round(task.regret(best.score), 4),
                "evaluations": len(result.evaluated),
            }
        )
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    from metanas.platform.search import propose

    if args.n < 1:
        raise ConfigError(f"-n: must be >= 1, got {args.n}")
    if not args.memory.is_dir():
        raise ConfigError(f"memory directory {str(args.memory)!r} does not exist")
    task, table = _table_task(args.task)
    try:
        proposals = propose(task.space, args.memory, task_id=args.task, n=args.n, family=table)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    rows = [
        {
            "config": c,
            "predicted": round(m, 4),
            "uncertainty": round(s, 4),
            "regret": round(task.regret(task.objective()(c)), 4),
        }
        for c, m, s in proposals
    ]
    if args.json:
        print(json.dumps({"task": args.task, "proposals": rows}))
        return 0
    print(
        f"{'#':>2}  {'predicted':>9}  {'+/-':>6}  {'regret':>7}  config   (predicted: normalised rank on a "
        "new task, 1 = best)"
    )
    for i, r in enumerate(rows, 1):
        print(
            f"{i:>2}  {r['predicted']:>9.3f}  {r['uncertainty']:>6.3f}  {r['regret']:>7.3f}  "
            f"{json.dumps(r['config'])}"
        )
    return 0
