"""Node aggregation (`meta_train.aggregation: node`) on a real local Ray: one node, so one
aggregator combines both workers' updates; sync gives the same meta-parameters as flat.
(Async: an aggregator killed while it holds an update is in test_fault_tolerance.py; a
node removed, in bench_tests/test_nodes.py.)"""

from __future__ import annotations

import pytest
import torch

from metanas.cluster.campaign_driver import CampaignDriver
from metanas.cluster.run_dir import RunDir
from metanas.platform.config import parse_campaign

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


def _meta_train(campaign_dict: dict, out, updates: str, aggregation: str) -> tuple[dict, dict]:
    campaign_dict["meta_train"].update(updates=updates, aggregation=aggregation, iterations=4)
    runner = CampaignDriver(parse_campaign(campaign_dict), RunDir(out), progress=False)
    try:
        summary, _ = runner.meta_train()
    finally:
        runner.close()
    checkpoint = RunDir(out).latest_checkpoint()
    return summary, {name: checkpoint.params(name) for name in ("metanas", "reptile_fixed")}


def test_sync_node_aggregation_gives_the_flat_meta_parameters_in_fewer_calls(
    ray_session, tiny_campaign_dict, tmp_path
):
    flat, flat_params = _meta_train(dict(tiny_campaign_dict), tmp_path / "flat", "sync", "flat")
    node, node_params = _meta_train(tiny_campaign_dict, tmp_path / "node", "sync", "node")
    assert flat["updates_applied"] == node["updates_applied"] == 4 * 2 * 2
    for name in flat_params:
        for key, value in flat_params[name].items():
            assert torch.allclose(node_params[name][key], value, atol=1e-6), (name, key)
    # one call per learner and iteration; flat: each task's update in it; node: the node's
    # two workers' updates summed into one array
    assert flat["meta_learner_received"] == {"calls": 8, "arrays": 16, "updates": 16}
    assert node["meta_learner_received"] == {"calls": 8, "arrays": 8, "updates": 16}
