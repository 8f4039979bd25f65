"""Shared fixtures: one real local Ray per test session, tiny campaigns, data paths."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]

# Property tests: `make test` runs each property on a few dozen random inputs; a thorough
# run (`pytest --hypothesis-profile thorough`) on 500. No deadline: the machines are shared.
settings.register_profile(
    "default", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("default")
# shared/ lies beside the repository (developers' checkouts and CI alike)
OMNIGLOT = Path(os.environ.get("METANAS_OMNIGLOT_DIR", REPO.parent / "shared" / "data" / "omniglot"))

TINY_CAMPAIGN = {
    "name": "tiny",
    "seed": 3,
    "data": {"source": "digits", "split": "class", "test_classes": 12},
    "episodes": {"n_way": 5, "k_shot": 1, "query": 5, "train_shots": 2, "train_query": 5},
    "space": {"nodes": 1, "channels": 4, "cells": 1},
    "meta_train": {
        "iterations": 4,
        "meta_batch": 2,
        "inner": {"steps": 2, "lr_w": 0.003, "lr_alpha": 0.003},
        "alpha_warmup": 1,
        "checkpoint_every": 2,
    },
    # The supernet and the fixed cell only: the derived network and Conv-4 (the other
    # meta-trained baselines) have their own end-to-end test.
    "meta_test": {
        "tasks": 6,
        "adapt": {"steps": 2, "lr_w": 0.003, "lr_alpha": 0.003},
        "baselines": ["reptile_fixed", "scratch", "pixel_prototypes"],
    },
    "workers": {"count": 2, "cpus_per_worker": 1},
}


def pytest_collection_modifyitems(items: list) -> None:
    """A test that uses the session's Ray is a `ray` test, marked or not (`make test-fast`
    leaves those out)."""
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)


@pytest.fixture
def tiny_campaign_dict() -> dict:
    return copy.deepcopy(TINY_CAMPAIGN)


def descendants(root: int) -> set[int]:
    """`root` and every process below it, from `ps`."""
    import subprocess

    rows = subprocess.run(
        ["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    children: dict[int, list[int]] = {}
    for row in rows:
        if row.strip():
            pid, parent = map(int, row.split())
            children.setdefault(parent, []).append(pid)
    todo, seen = [root], set()
    while todo:
        pid = todo.pop()
        seen.add(pid)
        todo += children.get(pid, [])
    return seen


SESSION_MARK = "METANAS_TEST_SESSION"


def _marked(token: str) -> dict[int, str]:
    """pid -> command line of every process whose environment carries the session's mark
    (anything the tests started, however deep, and even if it was orphaned)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if f"{SESSION_MARK}={token}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                found[int(proc.name)] = (
                    (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
                )
        except OSError:
            continue
    return found


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """Fail the suite if any process the tests started outlives it (after a grace period
    for Ray's processes to follow their shut-down drivers); kill what is left."""
    import signal
    import time
    import uuid

    token = uuid.uuid4().hex
    os.environ[SESSION_MARK] = token  # inherited by every process the tests start
    yield
    deadline = time.time() + 20
    while _marked(token) and time.time() < deadline:
        time.sleep(0.5)
    left = _marked(token)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        pytest.fail(
            f"{len(left)} processes the tests started were still alive at the end: "
            f"{sorted(left.values())[:5]}"
        )


@pytest.fixture(scope="session")
def ray_session():
    """One real local Ray for the whole session (4 logical CPUs so two workers and the
    meta-learner fit on a 2-core machine)."""
    import ray

    from metanas.cluster.connect import connect

    connect(num_cpus=4)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def omniglot_zips() -> list[Path]:
    zips = sorted(OMNIGLOT.glob("images_background_small*.zip"))
    assert len(zips) == 2, (
        f"the Omniglot test data is expected in {OMNIGLOT} (shared/data beside the repository; or set "
        "METANAS_OMNIGLOT_DIR)"
    )
    return zips
