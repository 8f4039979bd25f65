"""A small campaign over the Omniglot background sets, end to end (slow)."""

from __future__ import annotations

import pytest

from metanas.platform.campaign import run_campaign
from metanas.platform.config import parse_campaign


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(900)
def test_small_omniglot_campaign_runs_end_to_end(ray_session, omniglot_zips, tmp_path, tiny_campaign_dict):
    cfg = tiny_campaign_dict
    cfg["name"] = "omniglot-small"
    cfg["data"] = {
        "source": "folders",
        "paths": [str(p) for p in omniglot_zips],
        "image_size": 28,
        "test_fraction": 0.25,
        "rotations": [0, 90],
        "invert": True,
    }
    cfg["meta_train"].update(iterations=6, meta_batch=2)
    summary = run_campaign(parse_campaign(cfg), tmp_path / "run", progress=False)
    mt = summary["meta_train"]
    assert mt["tasks_completed"] == mt["tasks_planned"] == 6 * 2 * 2
    assert summary["meta_test"]["tasks"] == 6
    # learned or not, a 5-way classifier on real characters must beat chance (0.2)
    assert summary["meta_test"]["accuracy"]["pixel_prototypes"]["mean"] > 0.3
    assert (tmp_path / "run" / "meta_train.png").exists()
