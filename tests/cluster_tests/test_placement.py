"""How many workers a cluster holds and what is missing, without Ray."""

from __future__ import annotations

from metanas.cluster.placement import auto_worker_count, missing_resources


def test_auto_worker_count_fits_the_cluster():
    assert auto_worker_count(1, 0, {"CPU": 16}) == 16
    assert auto_worker_count(2, 1, {"CPU": 16, "GPU": 3}) == 3  # GPUs are the limit
    assert auto_worker_count(1, 0.5, {"CPU": 16, "GPU": 3}) == 6  # fractional GPUs share a device
    assert auto_worker_count(4, 0, {"CPU": 2}) == 1


def test_missing_resources_names_what_is_short():
    assert missing_resources(3, 1, 1, {"CPU": 8, "GPU": 0}).startswith(
        "they need 3 GPU (3 x 1) but the cluster has 0 GPU"
    )
    assert "not free" in missing_resources(2, 1, 0, {"CPU": 8})
