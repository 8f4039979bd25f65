"""Campaign outputs: summary.json, the meta-training curve (PNG) and the printed table."""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from metanas._util.atomic import atomic_write_json
from metanas._util.stats import mean_ci95
from metanas.cluster.hardware import hardware_summary
from metanas.cluster.run_dir import RunDir
from metanas.cluster.schema import DERIVED, Campaign

if TYPE_CHECKING:  # (the runner imports Ray; a report can be read without it)
    from metanas.cluster.campaign_driver import CampaignResult

log = logging.getLogger(__name__)

HARDWARE_PNG = "hardware.png"
METHODS = ("metanas", "metanas_derived", "reptile_fixed", "reptile_conv4", "scratch", "pixel_prototypes")
COLORS = {
    "metanas": "tab:blue",
    "metanas_derived": "tab:green",
    "reptile_fixed": "tab:orange",
    "reptile_conv4": "tab:red",
}


def _accuracy(results: list) -> dict[str, dict[str, float]]:
    methods = [m for m in METHODS if results and m in results[0].accuracy]
    return {m: mean_ci95([r.accuracy[m] for r in results]) for m in methods}


def summarize_meta_test(campaign: Campaign, results: list, meta_genotype) -> dict[str, Any]:
    """summary.json's `meta_test` section from the per-task `TestResult`s of every
    evaluation; its top-level `accuracy` is the first evaluation's."""
    evaluations = []
    for e, ev in enumerate(campaign.evaluations()):
        mine = [r for r in results if r.evaluation == e]
        evaluations.append(
            {
                "n_way": ev.n_way,
                "k_shot": ev.k_shot,
                "query_per_class": ev.query,
                "tasks": len(mine),
                "accuracy": _accuracy(mine),
            }
        )
    first = [r for r in results if r.evaluation == 0]
    task_genotypes = Counter(tuple(r.genotype) for r in first)
    edges = campaign.space.cell_space().edge_names
    return {
        **evaluations[0],
        "genotype": list(meta_genotype),
        "task_genotypes": [{"genotype": list(g), "tasks": n} for g, n in task_genotypes.most_common(5)],
        # how often each op won each edge across the first evaluation's tasks
        "op_counts": {
            edge: dict(Counter(r.genotype[k] for r in first).most_common()) for k, edge in enumerate(edges)
        },
        "evaluations": evaluations,
    }


def method_costs(campaign: Campaign, meta_train: dict[str, Any], genotype) -> dict[str, dict[str, Any]]:
    """summary.json's `meta_train.methods`: each method's parameter count (its network for
    the first evaluation's n_way, head included) and meta-training time (its tasks' seconds
    on the workers, summed: the compute it took, whatever the number of workers)."""
    from metanas.searchers.darts.adaptation import ModelSpec
    from metanas.searchers.darts.cost import count_params

    n_way = campaign.evaluations()[0].n_way
    derived = meta_train.get("derived_stage", {})
    seconds = {**meta_train.get("learner_task_s", {}), **derived.get("learner_task_s", {})}

    def params(spec: ModelSpec) -> int:
        return count_params(replace(spec, n_way=n_way).build(seed=0))

    out = {}
    for name in campaign.meta_trained():
        spec = campaign.model_spec(name, tuple(derived.get("genotype", genotype)))
        out[name] = {"params": params(spec), "meta_train_s": seconds.get(name, 0.0)}
    if "scratch" in campaign.meta_test.baselines:  # the tasks' own genotypes, never meta-trained
        out["scratch"] = {
            "params": params(ModelSpec(campaign.space.cell_space(), 1, n_way, tuple(genotype))),
            "meta_train_s": 0.0,
        }
    if "pixel_prototypes" in campaign.meta_test.baselines:
        out["pixel_prototypes"] = {"params": 0, "meta_train_s": 0.0}
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curve(curve: list[dict[str, float]], path, title: str, alpha_warmup: int = 0) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    its = [row["iteration"] for row in curve]
    for name, color in COLORS.items():
        ys = np.asarray([row.get(name, math.nan) for row in curve], dtype=float)
        if len(ys) == 0 or np.isnan(ys).all():
            continue
        ax.plot(its, ys, color=color, alpha=0.25, lw=1)
        window = max(1, len(ys) // 20)
        smooth = np.convolve(np.nan_to_num(ys), np.ones(window) / window, mode="valid")
        ax.plot(its[window - 1 :], smooth, color=color, lw=2, label=f"{name} (moving mean of {window})")
    if 0 < alpha_warmup < len(its):
        ax.axvline(alpha_warmup, color="gray", ls="--", lw=1)
        ax.annotate(
            "alpha warm-up ends",
            (alpha_warmup, ax.get_ylim()[0]),
            xytext=(4, 6),
            textcoords="offset points",
            color="gray",
        )
    ylabel = "query accuracy (meta-train tasks,\nprototype head before adaptation)"
    _finish(plt, fig, ax, path, title, "meta-iteration", ylabel)


def plot_validation(validation: list[dict[str, Any]], path, title: str) -> None:
    """The learning curves: validation accuracy (after adaptation) per checkpoint, with
    95% intervals, one line per meta-trained method."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, color in COLORS.items():
        points = [(row["iteration"], row["accuracy"][name]) for row in validation if name in row["accuracy"]]
        if not points:
            continue
        its = np.asarray([p[0] for p in points])
        mean = np.asarray([p[1]["mean"] for p in points])
        half = np.nan_to_num(np.asarray([p[1]["ci95"] for p in points], dtype=float))
        ax.plot(its, mean, color=color, lw=2, marker="o", ms=3, label=name)
        ax.fill_between(its, mean - half, mean + half, color=color, alpha=0.15)
    xlabel = "meta-iteration (of each method's own stage)"
    ylabel = "validation accuracy\n(held-out classes, after adaptation)"
    _finish(plt, fig, ax, path, title, xlabel, ylabel)


def _finish(plt, fig, ax, path, title: str, xlabel: str, ylabel: str) -> None:
    """Label, grid and legend as every campaign plot has them; write the PNG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_hardware(hw: dict[str, Any], path, title: str) -> None:
    """Each genotype the meta-test tasks derived (dot area: how many tasks), its
    supernet accuracy against its latency, the Pareto front, the limit and the derived
    network."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))

    def latency(row: dict[str, Any]) -> float:
        return row["latency_ms"] if row["latency_ms"] is not None else row["predicted_latency_ms"]

    rows = hw["genotypes"]
    ax.scatter(
        [latency(r) for r in rows],
        [r["accuracy"] for r in rows],
        s=[12 + 6 * r["tasks"] for r in rows],
        color="tab:blue",
        alpha=0.5,
        label="task genotypes (area: tasks)",
    )
    front = sorted((r for r in rows if r["genotype"] in hw["pareto"]), key=latency)
    ax.plot(
        [latency(r) for r in front],
        [r["accuracy"] for r in front],
        color="tab:blue",
        lw=1.5,
        marker="o",
        ms=4,
        label="Pareto front",
    )
    d = hw["derived"]
    if d.get("accuracy") is not None:
        ax.scatter(
            [latency(d)],
            [d["accuracy"]],
            marker="*",
            s=200,
            color="tab:green",
            label="metanas_derived",
            zorder=3,
        )
    if hw.get("max_latency_ms"):
        ax.axvline(
            hw["max_latency_ms"],
            color="tab:red",
            ls="--",
            lw=1,
            label=f"max_latency_ms {hw['max_latency_ms']:g}",
        )
    _finish(plt, fig, ax, path, title, f"latency (ms, batch {hw['batch']})", "accuracy (first evaluation)")


def results_table(summary: dict[str, Any]) -> str:
    mt = summary["meta_test"]
    costs = summary["meta_train"].get("methods", {})
    lines = []
    for ev in mt.get("evaluations", [mt]):
        lines += [
            f"meta-test: {ev['n_way']}-way {ev['k_shot']}-shot, {ev['tasks']} held-out tasks",
            f"{'method':<18}{'accuracy':>10}{'95% CI':>12}{'params':>10}{'meta-train s':>14}",
        ]
        for name, acc in sorted(ev["accuracy"].items(), key=lambda kv: -kv[1]["mean"]):
            cost = costs.get(name, {})
            params, seconds = cost.get("params", ""), cost.get("meta_train_s", "")
            interval = "+/- " + format(acc["ci95"], ".4f")
            lines.append(f"{name:<18}{acc['mean']:>10.4f}{interval:>12}{params:>10}{seconds:>14}")
    lines.append(f"meta-learned genotype: {', '.join(mt['genotype'])}")
    tr = summary["meta_train"]
    lines.append(
        f"meta-train: {tr['iterations']} iterations, {tr['tasks_completed']}/{tr['tasks_planned']} tasks "
        "completed "
        f"({tr['tasks_failed']} failed, {tr['tasks_retried']} retried), {tr['wall_s']:.0f} s"
    )
    if "derived_stage" in tr:
        d = tr["derived_stage"]
        lines.append(
            f"derived network: {d['tasks_completed']}/{d['tasks_planned']} tasks, {d['wall_s']:.0f} s"
        )
    if "hardware" in summary:
        hw = summary["hardware"]
        d = hw["derived"]
        shown = d["latency_ms"] if d["latency_ms"] is not None else d["predicted_latency_ms"]
        lines.append(
            f"hardware ({hw['device']}): derived network {shown:.3f} ms, {d['params']} params; "
            f"{hw['tasks_within'] * 100:.1f}% of tasks' genotypes within the limits; "
            f"{len(hw['pareto'])} genotypes on the Pareto front of {len(hw['genotypes'])}"
        )
    return "\n".join(lines)


def write_report(run: RunDir, campaign: Campaign, result: CampaignResult, wall_s: float) -> dict[str, Any]:
    """Write summary.json, the meta-training curve and the learning curves; return the summary."""
    meta_train = {**result.meta_train, "validation": result.validation}
    meta_train["methods"] = method_costs(campaign, meta_train, result.genotype)
    meta_test = summarize_meta_test(campaign, result.tests, result.genotype)
    summary = {
        "campaign": campaign.name,
        "wall_s": round(wall_s, 2),
        "meta_train": meta_train,
        "meta_test": meta_test,
    }
    if campaign.constraints is not None:
        derived = meta_test["accuracy"].get(DERIVED, {}).get("mean")
        summary["hardware"] = hardware_summary(campaign, run.root, result.tests, result.genotype, derived)
    atomic_write_json(run.summary_file, summary)
    try:  # a plot is a convenience; the summary is the record
        plot_curve(
            result.curve, run.curve_png, f"{campaign.name}: meta-training", campaign.meta_train.alpha_warmup
        )
        if result.validation:
            plot_validation(result.validation, run.validation_png, f"{campaign.name}: learning curves")
        if "hardware" in summary:
            plot_hardware(
                summary["hardware"], run.root / HARDWARE_PNG, f"{campaign.name}: accuracy against latency"
            )
    except Exception:
        log.exception("could not draw the curves")
    return summary
