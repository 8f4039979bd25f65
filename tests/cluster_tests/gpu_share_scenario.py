"""TaskWorkers asking for half a GPU each on a simulated cluster (`ray.cluster_utils.
Cluster`: a head without GPUs and two nodes declaring one GPU each; no real GPU, so the
workers say so and use the CPU). Run as its own process by the tests (a process joins one
Ray cluster); prints one JSON line: where each worker landed and which GPU it was given."""

from __future__ import annotations

import json
import sys


def main() -> None:
    from metanas.cluster.connect import simulated_cluster
    from metanas.cluster.placement import workers_per_gpu
    from metanas.cluster.worker_pool import WorkerPool
    from metanas.platform.config import parse_campaign
    from tests.conftest import TINY_CAMPAIGN

    with simulated_cluster(2, cpus_per_node=2, gpus_per_node=1, head_cpus=2) as cluster:
        nodes = cluster.list_all_nodes()[1:]  # (the head first)
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


if __name__ == "__main__":
    sys.exit(main())
