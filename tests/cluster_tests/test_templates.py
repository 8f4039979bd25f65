"""The cluster templates ship in the package and say what the README says they do."""

from __future__ import annotations

from importlib import resources

import yaml


def _load(name: str) -> dict:
    return yaml.safe_load(resources.files("metanas.cluster.templates").joinpath(name).read_text())


def test_ray_up_template_has_a_cpu_head_and_autoscaled_gpu_workers():
    cfg = _load("ray-cluster.yaml")
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"]["GPU"] == 0
    gpu = types["gpu_worker"]
    assert gpu["resources"]["GPU"] >= 1 and gpu["min_workers"] <= gpu["max_workers"] <= cfg["max_workers"]
    assert any("--dashboard-host=127.0.0.1" in c for c in cfg["head_start_ray_commands"])


def test_kuberay_rayjob_runs_a_campaign_on_gpu_workers():
    job = _load("rayjob.yaml")
    assert job["kind"] == "RayJob" and job["apiVersion"].startswith("ray.io/")
    assert job["spec"]["entrypoint"].startswith("python -m metanas run ")
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    worker = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
