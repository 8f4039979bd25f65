"""A campaign on a simulated multi-node cluster (`ray.cluster_utils.Cluster`): a CPU-only
head and 3 worker nodes declaring 1 GPU each (no real GPU: the workers say so and use the
CPU). Mode `remove` removes one worker node mid-campaign, `remove_all` all three. Run as
its own process by the tests, because a process can join only one Ray cluster; prints
one JSON line."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from pathlib import Path

import ray


def main(out: Path, mode: str, updates: str) -> None:
    from metanas.cluster import worker_pool
    from metanas.cluster.campaign_driver import CampaignDriver
    from metanas.cluster.connect import simulated_cluster
    from metanas.cluster.run_dir import RunDir
    from metanas.memory.store import MemoryStore
    from metanas.platform.config import parse_campaign
    from tests.conftest import TINY_CAMPAIGN

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    with simulated_cluster(3, cpus_per_node=1, gpus_per_node=1, head_cpus=2) as cluster:
        nodes = cluster.list_all_nodes()[1:]  # (the head first)
        cfg = json.loads(json.dumps(TINY_CAMPAIGN))
        cfg["meta_train"].update(iterations=14, checkpoint_every=2, updates=updates)
        cfg["meta_train"]["inner"]["steps"] = 25
        cfg["workers"] = {
            "count": 3,
            "cpus_per_worker": 1,
            "gpus_per_worker": 1,
            "placement": "spread",
            "start_timeout_s": 60,
        }
        campaign = parse_campaign(cfg)
        run = RunDir(out)
        run.root.mkdir(parents=True, exist_ok=True)
        run.save_campaign(campaign)
        runner = CampaignDriver(campaign, run, address=cluster.address, progress=False)
        result: dict = {}

        def target() -> None:
            try:
                done = runner.run(None)
                result["summary"] = {"meta_train": done.meta_train, "meta_test": {"tasks": len(done.tests)}}
            except BaseException as err:
                result["error"] = repr(err)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        while not (out / "checkpoints" / "iter_000004.json").exists() and thread.is_alive():
            time.sleep(0.02)
        placed = [info.node_id for info in runner.worker_info]
        central = ray.get([runner.learner.actor.node_id.remote(), runner.memory.actor.node_id.remote()])
        gpu_nodes = [n.node_id for n in nodes]
        if mode == "remove":
            cluster.remove_node(nodes[2])
        elif mode == "remove_all":  # no worker can come back: the driver must give up, not spin
            worker_pool.WAIT_TIMEOUT_S = 5.0
            for node in nodes:
                cluster.remove_node(node)
        thread.join(timeout=400)
        if thread.is_alive():  # say where it hangs instead of a bare missing summary
            stack = "".join(traceback.format_stack(sys._current_frames()[thread.ident]))
            result["error"] = f"the campaign did not finish within 400 s; the driver is at:\n{stack}"
        keys = MemoryStore(out / "memory").keys()
        print(
            json.dumps(
                {
                    "error": result.get("error"),
                    "summary": result.get("summary"),
                    "worker_nodes": placed,
                    "gpu_nodes": gpu_nodes,
                    "head_node": cluster.head_node.node_id,
                    "central_nodes": central,
                    "devices": [info.device for info in runner.worker_info],
                    "memory_keys": len(keys),
                    "memory_unique": len(set(keys)),
                }
            )
        )
        runner.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), mode=sys.argv[2], updates=sys.argv[3])
