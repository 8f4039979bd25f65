"""The Omniglot campaign on one accelerator, in one process (no Ray: the device machines
carry no Ray wheel), to check the GPU path end to end and time it:

    python scripts/gpu_omniglot.py --data DIR_WITH_THE_TWO_ZIPS [--device cuda] [--out OUT.json]

It runs what `metanas run examples/omniglot.yaml` runs, with sync Reptile in place of the
async updates: stage 1 (the supernet, the hand-picked cell, Conv-4), stage 2 (the derived
network), then every evaluation's meta-test, all through the same `TaskWorkerCore` a
TaskWorker uses. Prints tasks/s per learner and the accuracies. `--iterations` and
`--tasks` shrink it for a smoke test on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from metanas._util.stats import mean_ci95  # noqa: E402
from metanas.cluster.messages import TestTask, TrainTask  # noqa: E402
from metanas.cluster.task_worker import TaskWorkerCore  # noqa: E402
from metanas.cluster.wire import pack  # noqa: E402
from metanas.platform.config import load_campaign  # noqa: E402
from metanas.searchers.darts.adaptation import get_params  # noqa: E402
from metanas.searchers.darts.reptile import reptile_step  # noqa: E402


def meta_train(runner: TaskWorkerCore, learner: str, derived: tuple[str, ...] | None) -> tuple[dict, float]:
    """Sync Reptile over the campaign's iterations; returns (meta-parameters, tasks/s)."""
    c = runner.campaign
    schedule = c.meta_schedule()
    theta = get_params(c.model_spec(learner, derived).build(seed=c.seed))
    start, tasks = time.perf_counter(), 0
    for it in range(c.meta_train.iterations):
        deltas = []
        for slot in range(c.meta_train.meta_batch):
            task = TrainTask(learner, it, slot, schedule.alpha_active(it), derived)
            delta, _ = runner.meta_train_task(task, pack(theta))
            deltas.append(delta.views())
            tasks += 1
        theta = reptile_step(theta, deltas, *schedule.betas(it))
    return theta, tasks / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", required=True, help="the directory holding images_background_small{1,2}.zip"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iterations", type=int, help="override meta_train.iterations (a smoke test)")
    parser.add_argument("--tasks", type=int, help="override the meta-test tasks per evaluation")
    parser.add_argument("--out", help="also write the result here (JSON)")
    args = parser.parse_args()
    campaign = load_campaign(REPO / "examples" / "omniglot.yaml")
    zips = sorted(str(p) for p in Path(args.data).glob("images_background_small*.zip"))
    update = {"data": campaign.data.model_copy(update={"paths": zips})}
    if args.iterations:
        update["meta_train"] = campaign.meta_train.model_copy(update={"iterations": args.iterations})
    if args.tasks:
        update["meta_test"] = campaign.meta_test.model_copy(
            update={
                "tasks": args.tasks,
                "evaluations": [ev.model_copy(update={"tasks": args.tasks}) for ev in campaign.evaluations()],
            }
        )
    campaign = campaign.model_copy(update=update)
    runner = TaskWorkerCore(campaign, device=args.device)
    result = {
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "tasks_per_s": {},
        "accuracy": [],
    }
    start = time.perf_counter()
    params = {}
    for learner in campaign.first_stage():
        params[learner], result["tasks_per_s"][learner] = meta_train(runner, learner, None)
        print(learner, f"{result['tasks_per_s'][learner]:.2f} tasks/s", flush=True)
    derived = campaign.space.cell_space().genotype_of(params["metanas"])
    if "metanas_derived" in campaign.meta_trained():
        params["metanas_derived"], result["tasks_per_s"]["metanas_derived"] = meta_train(
            runner, "metanas_derived", derived
        )
    result["genotype"] = list(derived)
    result["meta_train_s"] = round(time.perf_counter() - start, 1)
    for e, ev in enumerate(campaign.evaluations()):
        tests = [runner.meta_test_task(TestTask(i, e, derived), params) for i in range(ev.tasks)]
        accuracy = {m: mean_ci95([t.accuracy[m] for t in tests]) for m in tests[0].accuracy}
        result["accuracy"].append(
            {"n_way": ev.n_way, "k_shot": ev.k_shot, "tasks": ev.tasks, "accuracy": accuracy}
        )
        print(f"{ev.n_way}-way {ev.k_shot}-shot", json.dumps(accuracy), flush=True)
    result["total_s"] = round(time.perf_counter() - start, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
