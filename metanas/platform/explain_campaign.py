"""`metanas explain RUN_DIR`: one self-contained HTML page (every image embedded) of what a
campaign did and found, for people who would rather look than read summary.json:

- the results (accuracy with 95% intervals, parameters, meta-training seconds),
- the meta-training and learning curves,
- `alpha` per edge over meta-training (the softmax at each checkpoint, as a heat map),
- the derived cell drawn as a graph, and how often each op won across meta-test tasks,
- accuracy against latency with the Pareto front (campaigns with `constraints:`),
- which worker ran which task when, with retries and rewinds, and the staleness of the
  async updates (from the run's event log).

Every number on the page carries a `data-key` naming where summary.json holds it, so a test
(or a reader) can check the page against the record. A small script counts the images that
failed to render and says so at the top of the page.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metanas._util.atomic import atomic_write_bytes
from metanas.cluster.events import read_events
from metanas.cluster.run_dir import RunDir
from metanas.platform.campaign_outputs import COLORS, HARDWARE_PNG, METHODS, _pyplot

REPORT_FILE = "report.html"

_RENDER_CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter((img) => !(img.complete && img.naturalWidth > 0));
  document.body.dataset.imagesTotal = images.length;
  document.body.dataset.imagesRendered = images.length - broken.length;
  if (broken.length) {
    const note = document.getElementById("render-note");
    const names = broken.map((i) => i.alt).join(", ");
    note.textContent = broken.length + " of " + images.length + " images did not render: " + names;
    note.hidden = false;
  }
});
</script>"""

_STYLE = """<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; }
td, th { padding: 3px 10px; border-bottom: 1px solid #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } img { max-width: 100%; }
.note { color: #666; } #render-note { color: #b00; font-weight: bold; }
</style>"""


def _num(value: Any, key: str, digits: int = 4) -> str:
    """A number as the page shows it, tagged with its summary.json path."""
    text = "" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))
    return f'<td class="num" data-key="{html.escape(key)}">{html.escape(text)}</td>'


def _at(d: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        d = d[part]
    return d


def _png(fig) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _img(data: str | None, alt: str) -> str:
    if data is None:
        return ""
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _file_png(path: Path) -> str | None:
    return base64.b64encode(path.read_bytes()).decode() if path.is_file() else None


def results_section(summary: dict[str, Any]) -> str:
    mt = summary["meta_test"]
    costs = summary["meta_train"].get("methods", {})
    parts = []
    for e, ev in enumerate(mt.get("evaluations", [mt])):
        base = f"meta_test.evaluations.{e}" if "evaluations" in mt else "meta_test"
        rows = []
        for name in [m for m in METHODS if m in ev["accuracy"]]:
            acc = ev["accuracy"][name]
            cost = costs.get(name, {})
            rows.append(
                f"<tr><td>{name}</td>{_num(acc['mean'], f'{base}.accuracy.{name}.mean')}"
                f"{_num(acc['ci95'], f'{base}.accuracy.{name}.ci95')}"
                f"{_num(cost.get('params'), f'meta_train.methods.{name}.params')}"
                f"{_num(cost.get('meta_train_s'), f'meta_train.methods.{name}.meta_train_s', 1)}</tr>"
            )
        parts.append(
            f"<h3>{ev['n_way']}-way {ev['k_shot']}-shot, {ev['tasks']} held-out tasks</h3>"
            "<table><tr><th>method</th><th>accuracy</th><th>&plusmn; 95% "
            "CI</th><th>params</th><th>meta-train s</th></tr>" + "".join(rows) + "</table>"
        )
    tr = summary["meta_train"]
    counters = "".join(
        f"<tr><td>{k}</td>{_num(tr[k], f'meta_train.{k}', 3)}</tr>"
        for k in (
            "iterations",
            "tasks_planned",
            "tasks_completed",
            "tasks_failed",
            "tasks_retried",
            "meta_learner_restarts",
            "staleness_mean",
            "staleness_max",
            "wall_s",
        )
        if k in tr
    )
    return "".join(parts) + f"<h3>meta-training</h3><table>{counters}</table>"


def alpha_heatmap(run: RunDir, campaign) -> str | None:
    """softmax(alpha / temperature) of every edge at every checkpoint: one panel per edge,
    ops down, checkpoints across."""
    checkpoints = run.checkpoints_list()
    if not checkpoints:
        return None
    space = campaign.space.cell_space()
    schedule = campaign.meta_schedule()
    kinds = ["alpha", "alpha_reduce"] if space.reduction else ["alpha"]
    its = [c.iteration for c in checkpoints]
    weights = {kind: [] for kind in kinds}
    for c in checkpoints:
        params = c.params("metanas")
        t = schedule.temperature(c.iteration)
        for kind in kinds:
            weights[kind].append(torch.softmax(params[kind].double() / t, dim=-1).numpy())
    names = space.edge_names
    plt = _pyplot()
    n = len(names)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for k, name in enumerate(names):
        kind, edge = kinds[k // len(space.edges)], k % len(space.edges)
        grid = np.stack([w[edge] for w in weights[kind]], axis=1)  # ops x checkpoints
        ax = axes[k // cols][k % cols]
        im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=max(grid.max(), 1e-6))
        ax.set_title(name, fontsize=9)
        ax.set_yticks(range(len(space.ops)), space.ops, fontsize=7)
        step = max(1, len(its) // 6)
        ax.set_xticks(range(0, len(its), step), [str(i) for i in its[::step]], fontsize=7)
        ax.set_xlabel("iteration", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle("edge weights softmax(alpha / T) over meta-training")
    return _png(fig)


def cell_graph(space, genotype: list[str]) -> str:
    """The derived cell: inputs on the left, nodes in order, the output on the right; each
    edge labelled with its op (and the reduction cell below, if there is one)."""
    plt = _pyplot()
    kinds = [("normal cell", genotype[: len(space.edges)])]
    if space.reduction:
        kinds.append(("reduction cell", genotype[len(space.edges) :]))
    fig, axes = plt.subplots(len(kinds), 1, figsize=(8, 2.8 * len(kinds)), squeeze=False)
    for ax, (title, ops) in zip(axes[:, 0], kinds):
        _draw_cell(ax, space, ops)
        ax.set_title(title)
    return _png(fig)


def _draw_cell(ax, space, ops: list[str]) -> None:
    inputs = ["$c_{k-1}$"] if space.input_cells == 1 else ["$c_{k-2}$", "$c_{k-1}$"]
    pos = {f"in{j}": (0.0, 1.0 - j) for j in range(len(inputs))}
    for i in range(space.nodes):
        pos[f"n{i}"] = (1.0 + i, 0.5 + 0.6 * (-1) ** i)
    pos["out"] = (space.nodes + 1.0, 0.5)
    edge_style = {"color": "tab:blue", "lw": 1.2, "connectionstyle": "arc3,rad=0.08"}
    for (node, source), op in zip(space.edges, ops):
        src = f"in{source}" if source < space.input_cells else f"n{source - space.input_cells}"
        (x0, y0), (x1, y1) = pos[src], pos[f"n{node}"]
        _arrow(ax, (x0, y0), (x1, y1), edge_style)
        label_box = {"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8}
        ax.text(
            (x0 + x1) / 2, (y0 + y1) / 2 + 0.08, op, fontsize=8, ha="center", color="tab:blue", bbox=label_box
        )
    for i in range(space.nodes):  # every node joins the output (concatenated, 1x1 conv)
        _arrow(ax, pos[f"n{i}"], pos["out"], {"color": "gray", "lw": 0.8, "ls": "--"})
    labels = {
        **{f"in{j}": inputs[j] for j in range(len(inputs))},
        **{f"n{i}": f"node {i}" for i in range(space.nodes)},
        "out": "$c_k$",
    }
    for key, (x, y) in pos.items():
        box = {"boxstyle": "round,pad=0.4", "fc": "#eef" if key.startswith("n") else "#eee", "ec": "#446"}
        ax.text(x, y, labels[key], ha="center", va="center", fontsize=9, bbox=box)
    ax.set_xlim(-0.5, space.nodes + 1.5)
    ax.set_ylim(-0.8 if space.input_cells == 2 else -0.4, 1.5)
    ax.axis("off")


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], style: dict[str, Any]) -> None:
    ax.annotate("", end, start, arrowprops={"arrowstyle": "->", "shrinkA": 14, "shrinkB": 14, **style})


def op_wins(summary: dict[str, Any]) -> str | None:
    counts = summary["meta_test"].get("op_counts")
    if not counts:
        return None
    plt = _pyplot()
    ops = sorted({op for c in counts.values() for op in c})
    edges = list(counts)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(edges) + 2), 3.4))
    bottom = np.zeros(len(edges))
    cmap = plt.get_cmap("tab10")
    for o, op in enumerate(ops):
        values = np.array([counts[e].get(op, 0) for e in edges], dtype=float)
        ax.bar(edges, values, bottom=bottom, label=op, color=cmap(o % 10))
        bottom += values
    ax.set_ylabel("meta-test tasks")
    ax.set_title("which op each task's genotype chose, per edge")
    ax.tick_params(axis="x", labelsize=8, rotation=20)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def timeline(events: list[dict[str, Any]]) -> str | None:
    """Each worker's tasks as bars over the driver's clock, coloured by learner; retried
    tries as red crosses, rewinds as dashed lines."""
    tasks = [e for e in events if e["kind"] == "task"]
    if not tasks:
        return None
    t0 = min(e["t"] - (e["seconds"] or 0.0) for e in tasks)
    plt = _pyplot()
    workers = sorted({e["worker"] for e in tasks if e["worker"] is not None})
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.5 * max(1, len(workers))))
    for learner in sorted({e["learner"] for e in tasks}):
        for w in workers:
            bars = [
                (e["t"] - t0 - e["seconds"], e["seconds"])
                for e in tasks
                if e["worker"] == w
                and e["learner"] == learner
                and e["outcome"] == "completed"
                and e["seconds"]
            ]
            ax.broken_barh(
                bars,
                (w - 0.35, 0.7),
                color=COLORS.get(learner, "tab:purple"),
                label=learner if w == workers[0] else None,
            )
    lost = [e for e in tasks if e["outcome"] != "completed"]
    if lost:
        ax.scatter(
            [e["t"] - t0 for e in lost],
            [e["worker"] if e["worker"] is not None else -0.6 for e in lost],
            marker="x",
            color="red",
            s=40,
            label="retried / failed try",
            zorder=3,
        )
    for e in events:
        if e["kind"] == "rewind":
            ax.axvline(e["t"] - t0, color="red", ls="--", lw=1)
    ax.set_yticks(workers, [f"worker {w}" for w in workers])
    ax.set_xlabel("seconds since meta-training started (driver's clock)")
    ax.set_title("which worker ran which task when")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def staleness(events: list[dict[str, Any]]) -> str | None:
    values = [e["staleness"] for e in events if e["kind"] == "update"]
    if not values:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(values, bins=np.arange(max(values) + 2) - 0.5, color="tab:blue", rwidth=0.8)
    ax.set_xticks(range(max(values) + 1))
    ax.set_xlabel("staleness (meta-steps between read and update)")
    ax.set_ylabel("async updates")
    ax.set_title("staleness of the async updates")
    return _png(fig)


def hardware_section(summary: dict[str, Any], run: RunDir) -> str:
    hw = summary.get("hardware")
    if hw is None:
        return (
            '<p class="note">No <code>constraints:</code> in this campaign, '
            "so its genotypes were not measured.</p>"
        )
    d = hw["derived"]
    rows = "".join(
        f"<tr><td>{label}</td>{_num(d[k], f'hardware.derived.{k}')}</tr>"
        for label, k in (
            ("measured latency (ms)", "latency_ms"),
            ("predicted latency (ms)", "predicted_latency_ms"),
            ("parameters", "params"),
            ("FLOPs", "flops"),
        )
    )
    facts = [("share of meta-test tasks whose genotype is within the limits", "tasks_within")]
    if hw.get("table_check"):  # how the table ranked fresh networks on the driver beforehand
        n = hw["table_check"]["networks"]
        facts += [
            (
                f"latency table's Spearman on {n} fresh networks measured before meta-training",
                "table_check.spearman",
            ),
            ("its mean absolute error there (fraction)", "table_check.mape"),
        ]
    summary_rows = "".join(
        f"<tr><td>{label}</td>{_num(_at(hw, key), f'hardware.{key}')}</tr>" for label, key in facts
    )
    return (
        f"<p>Device: <code>{html.escape(hw['device'])}</code>, batch {hw['batch']}; limits: "
        f"max_latency_ms {hw['max_latency_ms']}, max_params {hw['max_params']}.</p>"
        f"<table>{summary_rows}</table>"
        f"<h3>derived network <code>{html.escape(', '.join(d['genotype']))}</code></h3><table>{rows}</table>"
        + _img(_file_png(run.root / HARDWARE_PNG), "accuracy against latency")
    )


def write_explain(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the run's report page (default RUN_DIR/report.html); return its path."""
    run = RunDir(Path(run_dir))
    campaign = run.load_campaign()
    if not run.summary_file.is_file():
        raise FileNotFoundError(f"{run.root} has no summary.json yet: explain a finished campaign")
    summary = json.loads(run.summary_file.read_text())
    events = read_events(run.root)
    genotype = summary["meta_test"]["genotype"]
    space = campaign.space.cell_space()
    sections = [
        ("Results", results_section(summary)),
        (
            "Meta-training",
            _img(_file_png(run.curve_png), "meta-training curve")
            + _img(_file_png(run.validation_png), "learning curves"),
        ),
        ("Architecture weights over meta-training", _img(alpha_heatmap(run, campaign), "alpha heat map")),
        (
            "The derived cell",
            f'<p>genotype <code data-key="meta_test.genotype">{html.escape(", ".join(genotype))}</code></p>'
            + _img(cell_graph(space, genotype), "derived cell")
            + _img(op_wins(summary), "op wins across meta-test tasks"),
        ),
        ("Accuracy against latency", hardware_section(summary, run)),
        (
            "Workers",
            _img(timeline(events), "worker timeline")
            + (
                _img(staleness(events), "staleness histogram")
                or '<p class="note">No async updates (sync campaign), so no staleness.</p>'
            )
            if events
            else '<p class="note">This run has no event log (events.jsonl): '
            "it was written before campaigns kept one.</p>",
        ),
    ]
    body = "".join(f"<h2>{title}</h2>{content}" for title, content in sections)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(campaign.name)}: metanas "
        "report</title>"
        f"{_STYLE}</head><body><h1>{html.escape(campaign.name)}</h1>"
        f"<p class='note'>{html.escape(str(run.root))}, wall time {_fmt_s(summary.get('wall_s'))}</p>"
        f"<p id='render-note' hidden></p>{body}{_RENDER_CHECK}</body></html>"
    )
    path = Path(out) if out else run.root / REPORT_FILE
    atomic_write_bytes(path, page.encode())
    return path


def _fmt_s(seconds: float | None) -> str:
    return "unknown" if seconds is None else f"{int(seconds // 60)} min {seconds % 60:.0f} s"
