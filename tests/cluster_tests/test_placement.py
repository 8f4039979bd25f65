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


def test_workers_per_gpu_counts_the_workers_sharing_each_device():
    from metanas.cluster.messages import WorkerInfo

    workers = [
        WorkerInfo(0, "a", 1, "cuda", ("0",)),
        WorkerInfo(1, "a", 2, "cuda", ("0",)),
        WorkerInfo(2, "b", 3, "cuda", ("0",)),
        WorkerInfo(3, "b", 4, "cpu"),
    ]
    from metanas.cluster.placement import workers_per_gpu

    assert workers_per_gpu(workers) == {"a:0": 2, "b:0": 1}
