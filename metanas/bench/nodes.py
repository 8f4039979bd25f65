"""`metanas bench scaling --nodes N`: one campaign's MetaLearner on simulated clusters of 1,
2, 4, ... N nodes (`ray.cluster_utils.Cluster`, 2 workers per node; each node declares one
GPU, none real, and workers ask for half of one, so two share it), flat against node
aggregation:

- async, zero-cost tasks (each returns a constant update through a real task's messages:
  the most a cluster could send): updates the MetaLearner took per second, the arrays it
  received per update, its utilisation (its CPU seconds over the wall time), the driver's
  CPU per task (the whole process, and the thread of its loop alone: one driver serves
  every task of a campaign, aggregated or not), and where the workers landed; at N nodes
  a node is also removed mid-run (every task accounted for once, every update applied
  once);
- sync at N nodes, one iteration of real tasks, `meta_batch` = workers (so each node runs
  about two of a learner's tasks per iteration): the arrays received per update and the
  largest difference between the flat and the aggregated meta-parameters.

The capacity model (README "How many updates one MetaLearner takes"): the MetaLearner is busy

    rho = rho_0 + U * c + I * a_inline + S * a_stored

at U updates per second, I arrays per second received inside their calls (Ray inlines up
to 100 KiB: a single update of the demo's supernet) and S through the object store (a
node's stack, or any update of a large supernet): `c` CPU seconds per update (its add
into the running sum and its bookkeeping; measured on the MetaLearner alone,
`learner_load`, 8 against 16 updates per call), `a_inline` and `a_stored` per array
received (fitted on two calibration runs on one node, flat and aggregated, apart from
the runs predicted), `rho_0` what it spends with nothing to do (measured over 2 s before
each run). Each run's rho is predicted from its measured U, I and S and compared with the
measured one."""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from metanas.bench.child import run_child
from metanas.cluster.run_dir import RunDir
from metanas.cluster.schema import DERIVED, Campaign

WORKERS_PER_NODE = 2
# One step with real tasks: the flat and the aggregated mean differ only in the order of a
# float32 sum there; over more steps the inner loops amplify that rounding (as they would
# the rounding of two flat runs whose updates arrived in another order).
SYNC_ITERATIONS = 1
CALIBRATION_PER_CALL = (8, 16)  # both through the object store: their difference is per update
IDLE_S = 2.0
# Zero-cost tasks finish fast: a run this long still has tasks in flight on the node when
# it goes (removed after the first of four checkpoints), so some must be re-run.
REMOVAL_ITERATIONS = 200


def per_update_cost(campaign: Campaign, seconds: float = 3.0) -> float:
    """The MetaLearner's CPU seconds per update (`c`) for the campaign's supernet on this
    machine: the difference between async runs with 8 and 16 updates per call."""
    from metanas.bench.learner import campaign_supernet_params, timed_load
    from metanas.cluster.connect import connect, is_connected, shutdown

    params = campaign_supernet_params(campaign)
    ours = not is_connected()
    connect(num_cpus=2)
    try:
        per_call_cpu = {}
        for k in CALIBRATION_PER_CALL:
            run = timed_load(params, "async", seconds, least=64 * k, per_call=k)
            per_call_cpu[k] = run["cpu_s"]["learner"] / (run["updates"] / k)
    finally:
        if ours:
            shutdown()
    few, many = CALIBRATION_PER_CALL
    return (per_call_cpu[many] - per_call_cpu[few]) / (many - few)


def fit_model(per_update_s: float, flat: dict[str, Any], node: dict[str, Any]) -> dict[str, float]:
    """`a_inline` and `a_stored` from two calibration runs (each: rho, rho_0, U, I, S)."""
    import numpy as np

    runs = (flat, node)
    rates = np.array([[r["inline_per_s"], r["stored_per_s"]] for r in runs])
    rest = np.array(
        [r["utilisation"] - r["idle_utilisation"] - r["updates_per_s"] * per_update_s for r in runs]
    )
    per_inline, per_stored = np.linalg.lstsq(rates, rest, rcond=None)[0]
    return {
        "per_update_s": per_update_s,
        "per_inline_s": float(per_inline),
        "per_stored_s": float(per_stored),
    }


def predicted_utilisation(run: dict[str, Any], model: dict[str, float]) -> float:
    return (
        run["idle_utilisation"]
        + run["updates_per_s"] * model["per_update_s"]
        + run["inline_per_s"] * model["per_inline_s"]
        + run["stored_per_s"] * model["per_stored_s"]
    )


def largest_cluster(model: dict[str, float], task_s: float, per_node: int, idle: float = 0.0) -> float:
    """Workers (each finishing a task every `task_s`) one MetaLearner takes before it
    saturates: flat (`per_node` 1) every update is an inline array; aggregated, `per_node`
    updates travel as one stored array."""
    per_array = model["per_inline_s"] if per_node == 1 else model["per_stored_s"]
    return (1 - idle) * task_s / (model["per_update_s"] + per_array / per_node)


def _cluster_campaign(
    campaign: Campaign, nodes: int, aggregation: str, updates: str, iterations: int
) -> Campaign:
    workers = nodes * WORKERS_PER_NODE
    mt = campaign.meta_train.model_copy(
        update={
            "iterations": iterations,
            "meta_batch": workers if updates == "sync" else campaign.meta_train.meta_batch,
            "alpha_warmup": 0,
            "checkpoint_every": max(1, iterations // 4),
            "updates": updates,
            "aggregation": aggregation,
            "validation": None,
        }
    )
    placement = {
        "count": workers,
        "cpus_per_worker": 1,
        "gpus_per_worker": 1 / WORKERS_PER_NODE,
        "placement": "spread",
        "start_timeout_s": 600,
    }
    return campaign.model_copy(
        update={"meta_train": mt, "workers": campaign.workers.model_copy(update=placement)}
    )


def _placement(worker_info: list, head: str) -> dict[str, Any]:
    per_gpu = Counter((info.node_id, info.gpu_ids) for info in worker_info)
    return {
        "nodes_used": len({info.node_id for info in worker_info}),
        "on_head": sum(info.node_id == head for info in worker_info),
        "workers_per_gpu": sorted(set(per_gpu.values())),
    }


def _run(
    campaign: Campaign,
    cluster: Any,
    zero_cost: bool = True,
    remove_node: bool = False,
    idle_s: float = IDLE_S,
) -> tuple:
    """Meta-train once; with `remove_node`, a worker node is removed after the first
    checkpoint. Returns (the run's row, the final meta-parameters)."""
    from metanas.cluster.campaign_driver import CampaignDriver

    with tempfile.TemporaryDirectory() as tmp:
        runner = CampaignDriver(
            campaign, RunDir(Path(tmp)), cluster.address, progress=False, zero_cost=zero_cost
        )
        try:
            runner.start()
            idle = runner.learner.load()
            time.sleep(idle_s)
            before, start = runner.learner.load(), time.perf_counter()
            idle_utilisation = (before["cpu_s"] - idle["cpu_s"]) / max(idle_s, 1e-9)
            first = Path(tmp) / "checkpoints" / f"iter_{campaign.meta_train.checkpoint_every:06d}.json"
            done = _meta_train_beside(runner, cluster, first if remove_node else None)
            wall, after = time.perf_counter() - start, runner.learner.load()
            placement = _placement(runner.worker_info, cluster.head_node.node_id)
        finally:
            runner.close()
        checkpoint = RunDir(Path(tmp)).latest_checkpoint()
        params = {name: checkpoint.params(name) for name in campaign.meta_trained() if name != DERIVED}
    mt, updates = done["summary"], after["updates"] - before["updates"]
    row = {
        "aggregation": campaign.meta_train.aggregation,
        "updates": campaign.meta_train.updates,
        "updates_per_s": round(updates / wall, 1),
        "arrays_per_update": round((after["arrays"] - before["arrays"]) / max(updates, 1), 3),
        "inline_per_s": round(
            (after["arrays"] - after["stored"] - before["arrays"] + before["stored"]) / wall, 1
        ),
        "stored_per_s": round((after["stored"] - before["stored"]) / wall, 1),
        "utilisation": round((after["cpu_s"] - before["cpu_s"]) / wall, 3),
        "idle_utilisation": round(idle_utilisation, 3),
        "wall_s": round(wall, 2),
        "accounted_for": mt["tasks_completed"] + mt["tasks_failed"] == mt["tasks_planned"],
        "applied_once": mt["updates_applied"] == mt["tasks_completed"] and mt["tasks_failed"] == 0,
        "tasks_retried": mt["tasks_retried"],
        **_driver_load(done["driver_cpu"], done["loop_cpu"], wall, mt),
        **({"removed_while_running": done["removed_while_running"]} if remove_node else {}),
        **placement,
    }
    return row, params


def _meta_train_beside(runner: Any, cluster: Any, remove_after: Path | None) -> dict[str, Any]:
    """Meta-train in a thread of its own; once `remove_after` exists (a checkpoint), remove
    a worker node while it runs. Returns the summary and the driver's CPU: the process's and
    the loop thread's (what saturates first)."""
    done: dict[str, Any] = {}

    def meta_train() -> None:
        loop_cpu = time.thread_time()
        done.update(summary=runner.meta_train()[0], loop_cpu=time.thread_time() - loop_cpu)

    cpu = time.process_time()
    thread = threading.Thread(target=meta_train)
    thread.start()
    if remove_after is not None:
        while not remove_after.exists() and thread.is_alive():
            time.sleep(0.01)
        cluster.remove_node(cluster.list_all_nodes()[-1])
        done["removed_while_running"] = thread.is_alive()
    thread.join()
    if "summary" not in done:
        raise RuntimeError("the meta-training run failed (see the log above)")
    return {**done, "driver_cpu": time.process_time() - cpu}


def _driver_load(cpu_s: float, loop_cpu_s: float, wall_s: float, summary: dict[str, Any]) -> dict[str, float]:
    """The driver's CPU per task try: the whole process (its Python loop and Ray's threads)
    and its loop's thread alone, which serves every task in turn."""
    tries = summary["tasks_completed"] + summary["tasks_failed"] + summary["tasks_retried"]
    return {
        "driver_utilisation": round(cpu_s / wall_s, 3),
        "driver_cpu_ms_per_task": round(1000 * cpu_s / max(tries, 1), 3),
        "driver_loop_cpu_ms_per_task": round(1000 * loop_cpu_s / max(tries, 1), 3),
    }


def _largest_difference(a: dict, b: dict) -> float:
    return max(float((a[n][k] - b[n][k]).abs().max()) for n in a for k in a[n])


def _cluster_main(spec: dict[str, Any]) -> None:
    """In a child process (a process joins one Ray cluster): every run on `nodes` nodes."""
    from metanas.cluster.connect import simulated_cluster

    campaign, nodes, iterations = Campaign.model_validate(spec["campaign"]), spec["nodes"], spec["iterations"]

    def run(aggregation: str, updates: str = "async", **kw: Any) -> tuple:
        its = iterations if updates == "async" else SYNC_ITERATIONS
        if kw.get("remove_node"):
            its = max(its, REMOVAL_ITERATIONS)
        kw.setdefault("idle_s", spec.get("idle_s", IDLE_S))
        return _run(_cluster_campaign(campaign, nodes, aggregation, updates, its), cluster, **kw)

    rows = []
    with simulated_cluster(nodes, cpus_per_node=WORKERS_PER_NODE, gpus_per_node=1) as cluster:
        if spec["calibrate"]:
            rows += [{**run(a)[0], "calibration": True} for a in ("flat", "node")]
        if spec.get("loads", True):
            rows += [run(a)[0] for a in ("flat", "node")]
        if spec["largest"] and nodes > 1:
            (flat, flat_params), (node, node_params) = (
                run(a, "sync", zero_cost=False) for a in ("flat", "node")
            )
            rows += [
                flat,
                {**node, "largest_difference_from_flat": _largest_difference(flat_params, node_params)},
            ]
            # last: the cluster has a node less after it
            rows.append({**run("node", remove_node=True)[0], "node_removed": True})
    print(json.dumps(rows), flush=True)


def _on_cluster(
    campaign: Campaign, nodes: int, iterations: int, largest: bool, calibrate: bool = False, **options: Any
) -> list[dict]:
    """Every run on `nodes` nodes, in a child process. `options` (tests): `loads=False`
    leaves out the flat and aggregated load runs, `idle_s` shortens the idle measurement."""
    spec = {
        "campaign": campaign.model_dump(mode="json"),
        "nodes": nodes,
        "iterations": iterations,
        "largest": largest,
        "calibrate": calibrate,
        **options,
    }
    return run_child("metanas.bench.nodes", spec, f"the runs on {nodes} simulated nodes")


def bench_nodes(campaign: Campaign, nodes: int = 8, iterations: int = 40) -> dict[str, Any]:
    """Runs on 1, 2, 4, ... `nodes` simulated nodes (see the module's docstring); every
    async run's utilisation against the capacity model, calibrated apart from those runs."""
    per_update = per_update_cost(campaign)
    counts = sorted({min(2**i, nodes) for i in range(nodes.bit_length() + 1)})
    rows = []
    for n in counts:
        for row in _on_cluster(campaign, n, iterations, largest=(n == nodes), calibrate=(n == 1)):
            rows.append({"nodes": n, "workers": n * WORKERS_PER_NODE, **row})
    calibration = {r["aggregation"]: r for r in rows if r.get("calibration")}
    model = fit_model(per_update, calibration["flat"], calibration["node"])
    checked = [r for r in rows if r["updates"] == "async" and not r.get("calibration")]
    for r in checked:
        r["predicted_utilisation"] = round(predicted_utilisation(r, model), 3)
        r["model_error"] = round(r["predicted_utilisation"] / max(r["utilisation"], 1e-9) - 1, 3)
    last = {
        (r["updates"], r["aggregation"]): r for r in rows if r["nodes"] == nodes and not r.get("node_removed")
    }
    return {
        "nodes": nodes,
        "workers_per_node": WORKERS_PER_NODE,
        "iterations": iterations,
        "model": {k: round(v, 7) for k, v in model.items()},
        # the README's sizing: workers one MetaLearner feeds at a GPU task time of 40 ms, and
        # that one driver feeds (its loop's thread busy all the time; aggregation or not,
        # it handles every task)
        "workers_before_saturation_at_40ms": {
            **{
                a: round(largest_cluster(model, 0.04, k, calibration[a]["idle_utilisation"]))
                for a, k in (("flat", 1), ("node", WORKERS_PER_NODE))
            },
            "driver": round(0.04 / (calibration["flat"]["driver_loop_cpu_ms_per_task"] / 1000)),
        },
        "runs": rows,
        "arrays_node_over_flat": {
            mode: round(last[mode, "node"]["arrays_per_update"] / last[mode, "flat"]["arrays_per_update"], 3)
            for mode in ("async", "sync")
            if (mode, "node") in last
        },
        # (the run with a node removed is a fault check: its retries are no load to size for)
        "model_within_25_percent": all(
            abs(r["model_error"]) <= 0.25 for r in checked if not r.get("node_removed")
        ),
    }


if __name__ == "__main__":
    _cluster_main(json.loads(sys.argv[1]))
