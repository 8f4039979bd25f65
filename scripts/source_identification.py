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
  (the task that rates the best result highest).
Also prints, from the full tables, how many of each task's 1% best configs every other
task shares: how far apart the tasks' optima lie.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metanas.memory.acquisition import greedy_portfolio, task_weights  # noqa: E402
from metanas.memory.bench_warmstart import cold_memory, table_ranks  # noqa: E402
from metanas.memory.transfer import MemoryModel  # noqa: E402

BUDGET, K = 50, 10
RULES = ("vote", "likelihood", "best")


def pick_source(rule: str, F: np.ndarray, y: np.ndarray, seed: int) -> int:
    """The stored task (row of F, its predictions at the evaluated configs) a rule follows."""
    if rule == "vote":
        return int(np.argmax(task_weights(F, y, seed)))
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
        F = model.F
        regret = np.asarray([t.regret(t.objective()(c)) for c in model.candidates])
        best_of = lambda picks: float(regret[list(picks)].min())
        row = {"hindsight_source": min(best_of(np.argsort(-f)[:K]) for f in F),
               "portfolio": best_of(greedy_portfolio(F, K))}
        for n in (4, 6):
            first = greedy_portfolio(F, n)
            for rule in RULES:
                source = pick_source(rule, F[:, first], -regret[first], seed)
                follow = [j for j in np.argsort(-F[source]) if j not in first][: K - n]
                row[f"portfolio{n}+{rule}"] = best_of(first + follow)
        out[t.name] = row
    return out


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
    print(f"regret@{K} on {args.table}, mean over tasks, 95% interval over {args.seeds} seeds; then per task ({', '.join(n.split('/')[-1] for n in names)})")
    for policy in runs[0][names[0]]:
        per_seed = np.asarray([[run[n][policy] for n in names] for run in runs])  # (seeds, tasks)
        half = 1.96 * per_seed.mean(1).std(ddof=1) / np.sqrt(len(runs)) if len(runs) > 1 else 0.0
        print(f"{policy:24s} {per_seed.mean():.4f} ± {half:.4f}  ", " ".join(f"{v:.3f}" for v in per_seed.mean(0)))
    top_overlap(args.table)


if __name__ == "__main__":
    main()
