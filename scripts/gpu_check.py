"""GPU check, run on a machine with a CUDA device (no Ray needed: the Ray-free task runner).

    python scripts/gpu_check.py [OUT.json]

1. Supernet training-step time at 28x28 (Omniglot's size), batch 25, 7 ops, 3 nodes
   (`metanas bench step`: without and with the speed settings): CPU with one thread,
   CUDA in fp32 and with bf16 autocast.
2. The demo campaign's meta-train and meta-test tasks through `TaskWorkerCore` on CUDA: the
   path a TaskWorker takes when Ray assigns it a GPU. Prints and writes the numbers.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metanas.bench.step import bench_step  # noqa: E402


def task_runner_on(device: str) -> dict:
    import yaml

    from metanas.cluster.messages import TestTask, TrainTask
    from metanas.cluster.schema import Campaign
    from metanas.cluster.task_worker import TaskWorkerCore
    from metanas.cluster.wire import pack
    from metanas.searchers.darts.adaptation import get_params

    campaign = Campaign.model_validate(
        yaml.safe_load(
            (Path(__file__).resolve().parents[1] / "metanas/platform/demo_campaign.yaml").read_text()
        )
    )
    runner = TaskWorkerCore(campaign, device=device)
    derived = campaign.fixed_genotype()  # (a stand-in for the genotype a campaign derives)
    names = campaign.meta_trained()
    theta = {name: get_params(campaign.model_spec(name, derived).build(seed=0)) for name in names}
    out = {}
    for name in names:
        t = time.perf_counter()
        for slot in range(4):
            delta, result = runner.meta_train_task(TrainTask(name, 0, slot, True, derived), pack(theta[name]))
        out[f"meta_train_{name}_s_per_task"] = round((time.perf_counter() - t) / 4, 4)
        out[f"meta_train_{name}_device_of_net"] = str(next(runner._nets[name, derived].parameters()).device)
        out[f"meta_train_{name}_query_accuracy_after"] = round(result.query_accuracy_after, 3)
    t = time.perf_counter()
    tests = [runner.meta_test_task(TestTask(i, 0, derived), theta) for i in range(10)]
    out["meta_test_s_per_task"] = round((time.perf_counter() - t) / 10, 4)
    out["meta_test_mean_accuracy_untrained"] = {
        m: round(sum(r.accuracy[m] for r in tests) / 10, 3) for m in tests[0].accuracy
    }
    return out


def main() -> None:
    cuda = torch.cuda.is_available()
    result = {
        "torch": torch.__version__,
        "cuda": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cpu": platform.processor() or platform.machine(),
    }
    for channels, cells in ((16, 3), (28, 4)):
        key = f"supernet_step_ms_c{channels}_cells{cells}"
        result[key] = {"cpu_1_thread": bench_step(channels=channels, cells=cells, rounds=2)["step_ms"]}
        if cuda:
            result[key]["cuda_fp32"] = bench_step(channels=channels, cells=cells, device="cuda")["step_ms"]
            result[key]["cuda_bf16_autocast"] = bench_step(
                channels=channels, cells=cells, device="cuda", autocast=torch.bfloat16
            )["step_ms"]
        print(key, result[key], flush=True)
    torch.set_num_threads(1)
    result["task_runner_cpu"] = task_runner_on("cpu")
    print("task_runner_cpu", result["task_runner_cpu"], flush=True)
    if cuda:
        result["task_runner_cuda"] = task_runner_on("cuda")
        print("task_runner_cuda", result["task_runner_cuda"], flush=True)
    text = json.dumps(result, indent=2)
    print(text)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)


if __name__ == "__main__":
    main()
