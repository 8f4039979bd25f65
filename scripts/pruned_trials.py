"""How should `MemorySampler`'s model count a pruned trial? Measured here, three ways:
`taken` (what it does: no evidence, but its config is not proposed again), `last_value`
(its last reported value, a lower fidelity's, as if final) and `failed` (-inf, what it did
before issue 28; the model reads -inf as taken, not as evidence, so `failed` and `taken`
propose alike, and measured alike: 3 seeds x 8 tasks per family, identical regrets).

The tables here have no learning curves, so this script gives the synthetic families'
tasks one: at fidelity f (1/9, 1/3, 1) a config reports its table score plus noise that
shrinks as f grows (standard deviation 0.7 of the task's score spread at 1/9, 0.35 at 1/3,
none at 1; fixed per task, config and fidelity). Every held-out task is searched with 30
trials by `OptunaSearcher` with those fidelities and its successive-halving pruner, the
sampler a `MemorySampler` over the other tasks' full-fidelity searches. Reported: the mean
normalised regret of the best config evaluated at full fidelity, after 10 and 30 trials,
with a 95% interval over tasks and seeds.

    python scripts/pruned_trials.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metanas._util.stats import mean_ci95  # noqa: E402
from metanas.bench.warmstart import cold_memory, load_tasks  # noqa: E402
from metanas.memory import sampler as sampler_module  # noqa: E402
from metanas.memory.sampler import MemorySampler, tuned_tpe  # noqa: E402
from metanas.searchers.optuna_search import OptunaSearcher  # noqa: E402

FIDELITIES = (1 / 9, 1 / 3, 1.0)
NOISE = {1 / 9: 0.7, 1 / 3: 0.35, 1.0: 0.0}
WAYS = ("taken", "last_value", "failed")


def curve_objective(task):
    spread = float(np.std(list(task.scores.values())))
    names = task.space.names

    def objective(config, fidelity):
        key = tuple(config[n] for n in names)
        seed = int(hashlib.sha256(f"{task.name}{key}{fidelity:.4f}".encode()).hexdigest()[:8], 16)
        return task.scores[key] + NOISE[min(NOISE, key=lambda f: abs(f - fidelity))] * spread * float(
            np.random.default_rng(seed).standard_normal()
        )

    return objective


ORIGINAL_HISTORY = sampler_module.MemorySampler._history


def history_counting_pruned(way: str):
    """`MemorySampler._history`, with pruned trials counted `way`."""
    original = ORIGINAL_HISTORY
    if way == "taken":
        return original

    def history(self, study, trial, space):
        configs, scores, taken, finished = original(self, study, trial, space)
        sign = 1.0 if study.direction == sampler_module.StudyDirection.MAXIMIZE else -1.0
        for t in study.get_trials(deepcopy=False):
            config = space.config_from(t.params)
            if t.state == sampler_module.TrialState.PRUNED and config is not None and config in taken:
                taken.remove(config)
                configs.append(config)
                last = (
                    t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else -math.inf
                )
                scores.append(sign * last if way == "last_value" else -math.inf)
        return configs, scores, taken, finished

    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tables", default="synthetic_0.5,synthetic_0.9")
    args = parser.parse_args()
    out = {}
    for table in args.tables.split(","):
        tasks = load_tasks(table)
        regrets = {w: {10: [], 30: []} for w in WAYS}
        for seed in range(args.seeds):
            _, stored = cold_memory(tasks, seed, 50)
            for t in tasks:
                memory = [stored[o.name] for o in tasks if o.name != t.name]
                for way in WAYS:
                    sampler_module.MemorySampler._history = history_counting_pruned(way)
                    searcher = OptunaSearcher(
                        seed=seed,
                        fidelities=FIDELITIES,
                        sampler=MemorySampler(t.space, past=memory, seed=seed, fallback=tuned_tpe(seed)),
                    )
                    result = searcher.search(curve_objective(t), t.space, 30)
                    full = [(i, tr) for i, tr in enumerate(result.trials) if tr.budget == 1.0]
                    for n in (10, 30):
                        best = max(
                            (t.scores[tuple(tr.config[k] for k in t.space.names)] for i, tr in full if i < n),
                            default=t.median,
                        )
                        regrets[way][n].append(t.regret(best))
        sampler_module.MemorySampler._history = history_counting_pruned("taken")
        out[table] = {w: {f"regret@{n}": mean_ci95(v) for n, v in r.items()} for w, r in regrets.items()}
        print(table, json.dumps(out[table]), flush=True)


if __name__ == "__main__":
    main()
