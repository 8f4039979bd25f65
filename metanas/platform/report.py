"""Campaign outputs: summary.json, the meta-training curve (PNG) and the printed table."""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from metanas.cluster.run_dir import RunDir
from metanas.cluster.schema import Campaign
from metanas.memory.atomic import atomic_write_json

if TYPE_CHECKING:  # (the runner imports Ray; a report can be read without it)
    from metanas.cluster.runner import CampaignResult

log = logging.getLogger(__name__)

METHODS = ("metanas", "reptile_fixed", "scratch", "pixel_prototypes")


def mean_ci95(values: list[float]) -> dict[str, float]:
    """Mean and the half-width of its 95% confidence interval (normal approximation,
    fine for the hundreds of tasks a meta-test uses)."""
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) == 0:
        return {"mean": math.nan, "ci95": math.nan}
    half = 1.96 * arr.std(ddof=1) / math.sqrt(len(arr)) if len(arr) > 1 else math.nan
    return {"mean": round(float(arr.mean()), 4), "ci95": round(float(half), 4)}


def summarize_meta_test(campaign: Campaign, results: list, meta_genotype) -> dict[str, Any]:
    """summary.json's `meta_test` section from the per-task `TestResult`s."""
    methods = [m for m in METHODS if results and m in results[0].accuracy]
    task_genotypes = Counter(tuple(r.genotype) for r in results)
    return {
        "n_way": campaign.episodes.n_way,
        "k_shot": campaign.episodes.k_shot,
        "query_per_class": campaign.episodes.query,
        "tasks": len(results),
        "accuracy": {m: mean_ci95([r.accuracy[m] for r in results]) for m in methods},
        "genotype": list(meta_genotype),
        "task_genotypes": [{"genotype": list(g), "tasks": n} for g, n in task_genotypes.most_common(5)],
    }


def plot_curve(curve: list[dict[str, float]], path, title: str, alpha_warmup: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    its = [row["iteration"] for row in curve]
    for name, color in (("metanas", "tab:blue"), ("reptile_fixed", "tab:orange")):
        ys = np.asarray([row.get(name, math.nan) for row in curve], dtype=float)
        if len(ys) == 0:
            continue
        ax.plot(its, ys, color=color, alpha=0.25, lw=1)
        window = max(1, len(ys) // 20)
        smooth = np.convolve(np.nan_to_num(ys), np.ones(window) / window, mode="valid")
        ax.plot(its[window - 1 :], smooth, color=color, lw=2, label=f"{name} (moving mean of {window})")
    if 0 < alpha_warmup < len(its):
        ax.axvline(alpha_warmup, color="gray", ls="--", lw=1)
        ax.annotate("alpha warm-up ends", (alpha_warmup, ax.get_ylim()[0]), xytext=(4, 6), textcoords="offset points", color="gray")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("query accuracy (meta-train tasks,\nprototype head before adaptation)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def results_table(summary: dict[str, Any]) -> str:
    mt = summary["meta_test"]
    lines = [
        f"meta-test: {mt['n_way']}-way {mt['k_shot']}-shot, {mt['tasks']} held-out tasks",
        f"{'method':<18}{'accuracy':>10}{'95% CI':>12}",
    ]
    for name, acc in sorted(mt["accuracy"].items(), key=lambda kv: -kv[1]["mean"]):
        lines.append(f"{name:<18}{acc['mean']:>10.4f}{'+/- ' + format(acc['ci95'], '.4f'):>12}")
    lines.append(f"meta-learned genotype: {', '.join(mt['genotype'])}")
    tr = summary["meta_train"]
    lines.append(
        f"meta-train: {tr['iterations']} iterations, {tr['tasks_completed']}/{tr['tasks_planned']} tasks completed "
        f"({tr['tasks_failed']} failed, {tr['tasks_retried']} retried), {tr['wall_s']:.0f} s"
    )
    return "\n".join(lines)


def write_report(run: RunDir, campaign: Campaign, result: "CampaignResult", wall_s: float) -> dict[str, Any]:
    """Write summary.json and the meta-training curve; return the summary."""
    meta_test = summarize_meta_test(campaign, result.tests, result.genotype)
    summary = {"campaign": campaign.name, "wall_s": round(wall_s, 2), "meta_train": result.meta_train, "meta_test": meta_test}
    atomic_write_json(run.summary_file, summary)
    try:
        plot_curve(result.curve, run.curve_png, f"{campaign.name}: meta-training", campaign.meta_train.alpha_warmup)
    except Exception:  # a plot is a convenience; the summary is the record
        log.exception("could not draw %s", run.curve_png)
    return summary
