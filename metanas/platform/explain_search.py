"""Why a warm-started search evaluated what it did: one self-contained HTML page from a
search result or a memory record (their trials carry a `why`, set by `metanas.search`).

- every evaluation in order: where it came from (probe, warm start, the memory's model,
  TPE, a stored Pareto set), the stored tasks it leaned on with their weights, its score
  and the best so far;
- the scores and the best so far over the evaluations, coloured by where each came from;
- how the stored tasks' weights moved as evaluations arrived (the memory's model weighs a
  stored task by how few pairs of the new task's results it misranks);
- for a multi-objective search, the metrics of every trial with the front, warm starts
  marked.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metanas._util.atomic import atomic_write_bytes
from metanas.platform.campaign_outputs import _pyplot
from metanas.platform.explain_campaign import _STYLE, _img, _num, _png
from metanas.searchers.pareto import pareto_front

SEARCH_REPORT_FILE = "search_report.html"


def _sources(trials: Sequence[dict]) -> list[str]:
    return [(t.get("why") or {}).get("source", t.get("source", "search")) for t in trials]


def _leaned_on(why: dict | None) -> str:
    if not why:
        return ""
    if "task" in why:
        return html.escape(str(why["task"]))
    tasks = why.get("tasks") or {}
    return ", ".join(f"{html.escape(t)} ({w:.2f})" for t, w in list(tasks.items())[:3])


def scores_figure(trials: Sequence[dict]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    scores = np.asarray([t["score"] for t in trials], dtype=float)
    finite = np.where(np.isfinite(scores), scores, np.nan)
    best = np.fmax.accumulate(np.where(np.isnan(finite), -np.inf, finite))
    x = np.arange(1, len(trials) + 1)
    sources = _sources(trials)
    cmap = plt.get_cmap("tab10")
    for i, source in enumerate(dict.fromkeys(sources)):
        pick = [j for j, s in enumerate(sources) if s == source]
        ax.scatter(x[pick], finite[pick], color=cmap(i % 10), s=22, label=source, zorder=3)
    ax.step(
        x, np.where(np.isfinite(best), best, np.nan), where="post", color="black", lw=1.5, label="best so far"
    )
    ax.set_xlabel("evaluation")
    ax.set_ylabel("score")
    ax.set_title("each evaluation, by where it came from")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def weights_figure(trials: Sequence[dict]) -> str | None:
    """The stored tasks' weights at each model proposal (the most weighted six)."""
    rows = [
        (i + 1, (t.get("why") or {}).get("tasks") or {})
        for i, t in enumerate(trials)
        if (t.get("why") or {}).get("source", "").startswith("memory model")
    ]
    if not rows:
        return None
    peak: dict[str, float] = {}
    for _, tasks in rows:
        for task, w in tasks.items():
            peak[task] = max(peak.get(task, 0.0), w)
    top = sorted(peak, key=peak.get, reverse=True)[:6]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for task in top:
        ax.plot([r[0] for r in rows], [r[1].get(task, 0.0) for r in rows], marker="o", ms=3, label=task)
    ax.set_xlabel("evaluation proposed by the memory's model")
    ax.set_ylabel("weight of the stored task")
    ax.set_ylim(0, 1.02)
    ax.set_title("how the stored tasks' weights moved as evaluations arrived")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def metrics_figure(trials: Sequence[dict], objectives: dict[str, str]) -> str | None:
    measured = [t for t in trials if isinstance(t.get("metrics"), dict)]
    if len(objectives) < 2 or not measured:
        return None
    a, b = list(objectives)[:2]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    warm = [t for t in measured if (t.get("why") or {}).get("source") == "pareto set"]
    rest = [t for t in measured if t not in warm]
    styles = (
        (rest, {"s": 18, "color": "tab:blue", "label": "searched"}),
        (warm, {"s": 40, "marker": "s", "color": "tab:orange", "label": "from stored Pareto sets"}),
    )
    for trials, style in styles:
        ax.scatter([t["metrics"][b] for t in trials], [t["metrics"][a] for t in trials], **style)
    front = sorted(
        (
            measured[i]
            for i in pareto_front([t["metrics"] for t in measured], {a: objectives[a], b: objectives[b]})
        ),
        key=lambda t: t["metrics"][b],
    )
    ax.plot(
        [t["metrics"][b] for t in front],
        [t["metrics"][a] for t in front],
        color="black",
        lw=1.2,
        marker="o",
        ms=3,
        label="Pareto front",
    )
    ax.set_xlabel(f"{b} ({objectives[b]})")
    ax.set_ylabel(f"{a} ({objectives[a]})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("the trials' metrics")
    return _png(fig)


def write_search_explain(
    trials: Sequence[dict], title: str, out: str | Path, objectives: dict[str, str] | None = None
) -> Path:
    """Write the page for these trials (`Trial.to_dict` form, in evaluation order)."""
    trials = [t for t in trials if t.get("source") != "known"]
    if not trials:
        raise ValueError("explain: this search has no evaluated trials")
    best, rows = -math.inf, []
    for i, t in enumerate(trials):
        if math.isfinite(t["score"]):
            best = max(best, t["score"])
        why = t.get("why") or {}
        config = html.escape(", ".join(f"{k}={v}" for k, v in t["config"].items()))
        source = html.escape(why.get("source", t.get("source", "")))
        best_so_far = _num(best if math.isfinite(best) else None, f"best_so_far.{i}")
        rows.append(
            f"<tr><td>{i + 1}</td><td>{source}</td><td>{_leaned_on(why)}</td>"
            f"{_num(t['score'], f'trials.{i}.score')}{best_so_far}"
            f"<td><code>{config}</code></td></tr>"
        )
    table = (
        "<table><tr><th>#</th><th>from</th><th>stored tasks it leaned on (weight)</th><th>score</th>"
        "<th>best so far</th><th>config</th></tr>" + "".join(rows) + "</table>"
    )
    weights = weights_figure(trials)
    body = (
        f"<h1>{html.escape(title)}</h1><p class='note'>{len(trials)} evaluations</p>"
        + "<h2>Evaluations</h2>"
        + _img(scores_figure(trials), "scores by source")
        + ("<h2>Stored tasks' weights</h2>" + _img(weights, "stored task weights") if weights else "")
        + (
            ("<h2>Metrics</h2>" + _img(metrics_figure(trials, objectives), "metrics and front"))
            if objectives
            else ""
        )
        + "<h2>Every evaluation</h2>"
        + table
    )
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title>{_STYLE}"
    page = f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"
    path = Path(out)
    atomic_write_bytes(path, page.encode())  # (a crash never leaves half a page)
    return path


def explain_record(memory: str | Path, key: str, out: str | Path | None = None) -> Path:
    """The page of one stored search, by its memory key."""
    from metanas.memory.store import MemoryStore

    records = [r for r in MemoryStore(Path(memory)).records() if r.key == key]
    if not records:
        raise FileNotFoundError(
            f"memory {memory} has no record with key {key!r}; `metanas memory ls {memory}` lists them"
        )
    record = records[0]
    objectives = next(
        (
            (t.get("why") or {}).get("objectives")
            for t in record.trials
            if (t.get("why") or {}).get("objectives")
        ),
        None,
    )
    return write_search_explain(
        record.trials, f"{record.task_id}: {record.searcher} search", out or SEARCH_REPORT_FILE, objectives
    )


def explain_search(result: Any, out: str | Path = SEARCH_REPORT_FILE, title: str = "search") -> Path:
    """The page of a `metanas.search` result (`SearchResult`)."""
    return write_search_explain([t.to_dict() for t in result.trials], title, out, result.objectives)
