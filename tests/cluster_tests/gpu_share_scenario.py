"""TaskWorkers asking for half a GPU each on a simulated cluster (`ray.cluster_utils.
Cluster`: a head without GPUs and two nodes declaring one GPU each; no real GPU, so the
workers say so and use the CPU). Run as its own process by the tests (a process joins one
Ray cluster); prints one JSON line: where each worker landed and which GPU it was given."""

from __future__ import annotations

import json
import sys

import ray
from ray.cluster_utils import Cluster


def main() -> None:
    from metanas.cluster.placement import workers_per_gpu
    from metanas.cluster.worker_pool import WorkerPool
    from metanas.platform.config import parse_campaign
    from tests.conftest import TINY_CAMPAIGN

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0, "include_dashboard": False}
    )
    nodes = [cluster.add_node(num_cpus=2, num_gpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address, logging_level="ERROR")
        cfg = json.loads(json.dumps(TINY_CAMPAIGN))
        cfg["workers"] = {"count": 4, "cpus_per_worker": 1, "gpus_per_worker": 0.5, "placement": "spread"}
        pool = WorkerPool(parse_campaign(cfg))
        infos = pool.wait_started()
        pool.close()
        print(
            json.dumps(
                {
                    "gpu_nodes": [n.node_id for n in nodes],
                    "workers": [
                        {"node": w.node_id, "gpu_ids": list(w.gpu_ids), "device": w.device} for w in infos
                    ],
                    "per_gpu": workers_per_gpu(infos),
                }
            ),
            flush=True,
        )
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
