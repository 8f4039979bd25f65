"""`bench scaling`'s baseline without Ray: the campaign's meta-training tasks run by plain
processes (one torch thread each, as a TaskWorker), 1 and then 2 at once, on the same
machine in the same run. What 2 plain processes lose against twice one is the machine's
(cores that slow each other down); what the 2 TaskWorkers lose beyond that is Ray's and the
driver's.

Each process (`python -m metanas.bench.plain_workers SPEC`) builds its task pools and
networks, runs one task to warm up, says `ready` and waits for `go` on its stdin, so all
start together; then it runs its share of the tasks (dealt round robin) from the
campaign's initial meta-parameters and prints its count and seconds. The rate is all tasks
over the slowest process's time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from metanas.cluster.schema import Campaign


def plain_tasks_per_s(campaign: Campaign, processes: int) -> float:
    """Tasks per second of `processes` plain processes sharing the campaign's tasks."""
    config = campaign.model_dump(mode="json")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", __name__, json.dumps({"campaign": config, "index": i, "of": processes})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    try:
        for p in procs:
            _read_line(p, "ready")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        done = [json.loads(_read_line(p, "{")) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    return sum(d["tasks"] for d in done) / max(d["seconds"] for d in done)


def _read_line(proc: subprocess.Popen, prefix: str) -> str:
    for line in proc.stdout:
        if line.startswith(prefix):
            return line
    raise RuntimeError(f"a plain worker process exited with {proc.wait()} before saying {prefix!r}")


def _work(spec: dict[str, Any]) -> None:
    import torch

    from metanas.cluster.task_worker import TaskWorkerCore
    from metanas.cluster.train_state import TrainPlan
    from metanas.cluster.wire import pack

    torch.set_num_threads(1)
    campaign = Campaign.model_validate(spec["campaign"])
    core, plan = TaskWorkerCore(campaign), TrainPlan.from_campaign(campaign)
    theta = {name: pack(campaign.initial_params(name)) for name in plan.learners}
    mine = [plan.task(n) for n in range(spec["index"], plan.iterations * plan.per_iteration, spec["of"])]
    core.meta_train_task(mine[0], theta[mine[0].learner])  # warm-up, as a started TaskWorker is
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    for task in mine:
        core.meta_train_task(task, theta[task.learner])
    print(json.dumps({"tasks": len(mine), "seconds": time.perf_counter() - start}), flush=True)


if __name__ == "__main__":
    _work(json.loads(sys.argv[1]))
