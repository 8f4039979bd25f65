"""End to end on a real local Ray: a 2-worker campaign, the learner API, resume after kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import metanas
from metanas.cluster.run_dir import RunDir
from metanas.platform.campaign import run_campaign
from metanas.platform.config import ConfigError, parse_campaign
from metanas.searchers.episodes import digits_pools
from tests.conftest import descendants

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def finished_run(ray_session, tmp_path_factory):
    from tests.conftest import TINY_CAMPAIGN

    out = tmp_path_factory.mktemp("run")
    summary = run_campaign(parse_campaign(TINY_CAMPAIGN), out, progress=False)
    return out, summary


@pytest.mark.timeout(300)
def test_two_worker_campaign_writes_summary_curve_and_checkpoints(finished_run):
    out, summary = finished_run
    assert json.loads((out / "summary.json").read_text()) == summary
    mt = summary["meta_train"]
    assert mt["tasks_planned"] == 4 * 2 * 2
    assert mt["tasks_completed"] == mt["tasks_planned"] and mt["tasks_failed"] == 0
    assert mt["resumed_from_iteration"] == 0
    busy = [w for w in mt["workers"] if w["tasks"] > 0]
    assert len(busy) >= 2 and len({w["pid"] for w in busy}) == len(busy)
    assert sum(w["tasks"] for w in mt["workers"]) == mt["tasks_completed"]
    test = summary["meta_test"]
    assert test["tasks"] == 6 and test["n_way"] == 5 and test["k_shot"] == 1
    for method in ("metanas", "reptile_fixed", "scratch", "pixel_prototypes"):
        acc = test["accuracy"][method]
        assert 0.0 <= acc["mean"] <= 1.0 and acc["ci95"] >= 0.0
    assert len(test["genotype"]) == 1  # one edge in the tiny cell
    assert (out / "meta_train.png").stat().st_size > 1000
    ckpt = RunDir(out).latest_checkpoint()
    assert ckpt is not None and ckpt.iteration == 4
    params = ckpt.params("metanas")
    assert "alpha" in params and all(isinstance(v, torch.Tensor) for v in params.values())


@pytest.fixture(scope="module")
def full_run(ray_session, tmp_path_factory):
    """Every method, both stages, learning curves, two evaluations."""
    from tests.conftest import TINY_CAMPAIGN

    cfg = {
        **TINY_CAMPAIGN,
        "meta_train": {**TINY_CAMPAIGN["meta_train"], "validation": {"episodes": 3, "fraction": 0.15}},
    }
    cfg["meta_test"] = {
        **TINY_CAMPAIGN["meta_test"],
        "baselines": ["metanas_derived", "reptile_fixed", "reptile_conv4", "scratch", "pixel_prototypes"],
        "conv4_channels": 8,
        "derived_channels": 6,
        "evaluations": [{"n_way": 5, "k_shot": 1}, {"n_way": 3, "k_shot": 2, "tasks": 4}],
    }
    out = tmp_path_factory.mktemp("full")
    return out, run_campaign(parse_campaign(cfg), out, progress=False), parse_campaign(cfg)


@pytest.mark.timeout(300)
def test_every_method_is_meta_trained_measured_and_evaluated(full_run):
    out, summary, campaign = full_run
    mt = summary["meta_train"]
    assert mt["tasks_planned"] == mt["tasks_completed"] == 4 * 2 * 3  # supernet, fixed cell, Conv-4
    derived = mt["derived_stage"]
    assert derived["tasks_planned"] == derived["tasks_completed"] == 4 * 2
    assert derived["genotype"] == summary["meta_test"]["genotype"]
    assert RunDir(out / "derived").latest_checkpoint().iteration == 4
    methods = mt["methods"]
    assert set(methods) == {
        "metanas",
        "metanas_derived",
        "reptile_fixed",
        "reptile_conv4",
        "scratch",
        "pixel_prototypes",
    }
    for name in ("metanas", "metanas_derived", "reptile_fixed", "reptile_conv4"):
        assert methods[name]["meta_train_s"] > 0 and methods[name]["params"] > 0
    assert methods["pixel_prototypes"] == {"params": 0, "meta_train_s": 0.0}
    # Conv-4 with 8 channels: 4 convs (no bias), 4 affine norms, a 5-way head on 8 features
    assert methods["reptile_conv4"]["params"] == 9 * 8 + 3 * 9 * 8 * 8 + 4 * 2 * 8 + 8 * 5 + 5
    # the derived network is the found genotype at derived_channels wide
    assert methods["metanas_derived"]["params"] != methods["scratch"]["params"]

    evaluations = summary["meta_test"]["evaluations"]
    assert [(e["n_way"], e["k_shot"], e["tasks"]) for e in evaluations] == [(5, 1, 6), (3, 2, 4)]
    for e in evaluations:
        assert set(e["accuracy"]) == set(methods)
        assert all(0.0 <= a["mean"] <= 1.0 for a in e["accuracy"].values())
    assert summary["meta_test"]["accuracy"] == evaluations[0]["accuracy"]

    curves = mt["validation"]
    assert [row["iteration"] for row in curves] == [0, 2, 4]
    assert all(
        set(row["accuracy"]) == {"metanas", "metanas_derived", "reptile_fixed", "reptile_conv4"}
        for row in curves
    )
    assert (out / "validation.png").stat().st_size > 1000


@pytest.mark.timeout(120)
def test_validation_episodes_come_from_classes_neither_trained_nor_tested(full_run):
    from metanas.cluster.task_worker import build_pools

    _, _, campaign = full_run
    train, test, validation = build_pools(campaign)
    base = lambda pool: {name.split("@")[0] for name in pool.names}  # noqa: E731
    # no class of either, and no rotation of a meta-train class (the digits' class split
    # makes each rotation a class, so the test pool may hold other rotations of a digit)
    assert validation.names and not set(validation.names) & (set(train.names) | set(test.names))
    assert not base(validation) & base(train)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("which", ["metanas_derived", "reptile_conv4", "reptile_fixed"])
def test_load_gives_each_meta_trained_method(full_run, which):
    out, summary, _ = full_run
    learner = metanas.load(out, which=which)
    _, test_pool = digits_pools([], [0, 90, 180, 270], split="class", test_classes=12, seed=3)
    ep = test_pool.sample_episode(3, 1, 4, seed=1)
    model = learner.adapt(ep.support_x, ep.support_y)
    assert model.predict(ep.query_x).shape == (len(ep.query_y),)
    expected = {"metanas_derived": tuple(summary["meta_test"]["genotype"]), "reptile_conv4": ("conv4_8",)}
    if which in expected:
        assert model.genotype == expected[which]


@pytest.mark.timeout(300)
def test_a_resumed_campaign_goes_on_with_the_derived_stage_where_it_stopped(full_run, tmp_path):
    import shutil

    out, summary, campaign = full_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "summary.json").unlink()
    for path in (copy / "derived" / "checkpoints").glob("iter_000004.*"):
        path.unlink()  # as if the driver died in the derived stage after its checkpoint at 2
    again = run_campaign(campaign, copy, resume=True, progress=False)
    assert again["meta_train"]["resumed_from_iteration"] == 4  # the first stage was done
    assert again["meta_train"]["derived_stage"]["resumed_from_iteration"] == 2
    assert (
        again["meta_train"]["derived_stage"]["genotype"] == summary["meta_train"]["derived_stage"]["genotype"]
    )


@pytest.mark.timeout(120)
def test_learner_api_adapts_and_predicts_original_labels(finished_run):
    out, _ = finished_run
    learner = metanas.load(out)
    _, test_pool = digits_pools([], [0, 90, 180, 270], split="class", test_classes=12, seed=3)
    ep = test_pool.sample_episode(3, 2, 4, seed=0)
    labels = np.array([10, 20, 30])[ep.support_y]
    model = learner.adapt(ep.support_x[:, 0], labels)  # (N, H, W)
    pred = model.predict(ep.query_x)  # (N, 1, H, W)
    assert set(pred.tolist()) <= {10, 20, 30} and pred.shape == (len(ep.query_y),)
    assert len(model.genotype) == 1
    big = torch.nn.functional.interpolate(torch.as_tensor(ep.query_x), size=(20, 20)).numpy()
    assert model.predict(np.repeat(big, 3, axis=1)).shape == pred.shape  # RGB, other size
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        learner.adapt(ep.support_x * 255, labels)
    with pytest.raises(ValueError, match="two classes"):
        learner.adapt(ep.support_x, np.zeros(len(labels)))


def test_existing_run_dir_needs_resume(finished_run):
    out, _ = finished_run
    from tests.conftest import TINY_CAMPAIGN

    with pytest.raises(ConfigError, match="--resume"):
        run_campaign(parse_campaign(TINY_CAMPAIGN), out, progress=False)


ITERATIONS = 24  # killed after the checkpoint of iteration 8


@pytest.mark.timeout(400)
@pytest.mark.parametrize(
    "updates, sig", [("sync", signal.SIGKILL), ("async", signal.SIGTERM)], ids=["sync-kill", "async-term"]
)
def test_driver_killed_mid_training_resumes_from_its_last_checkpoint(
    tiny_campaign_dict, tmp_path, updates, sig
):
    """SIGKILL: the driver dies mid-step. SIGTERM: it stops cleanly within 10 s, exit 143,
    one line, no process of its Ray left. Either way --resume continues."""
    tiny_campaign_dict["meta_train"].update(iterations=ITERATIONS, checkpoint_every=4, updates=updates)
    tiny_campaign_dict["meta_test"].update(tasks=4)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_campaign_dict))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "metanas", "run", str(config), "--out", str(out)]
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not list((out / "checkpoints").glob("iter_000008.json")):
            time.sleep(0.2)
        assert list((out / "checkpoints").glob("iter_*.json")), "no checkpoint appeared"
        family = descendants(proc.pid)
        sent = time.time()
        os.kill(proc.pid, sig)  # the driver, mid-training
        proc.wait(timeout=30)
        if sig == signal.SIGTERM:
            assert time.time() - sent < 10 and proc.returncode == 143
            lines = [line for line in proc.stderr.read().splitlines() if line.startswith("metanas:")]
            assert lines == ["metanas: terminated; rerun with --resume to continue from the last checkpoint"]
            time.sleep(2)  # (Ray's own processes follow their driver)
            alive = [pid for pid in family if Path(f"/proc/{pid}").exists() and pid != proc.pid]
            assert not alive, f"left behind: {alive}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # what the embedded Ray left behind
        except ProcessLookupError:
            pass
    killed_at = RunDir(out).latest_checkpoint().iteration
    assert 0 < killed_at < ITERATIONS
    assert not (out / "summary.json").exists()
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["meta_train"]["resumed_from_iteration"] >= killed_at > 0
    assert summary["meta_train"]["iterations"] == ITERATIONS
    assert (
        summary["meta_train"]["tasks_completed"]
        >= (ITERATIONS - summary["meta_train"]["resumed_from_iteration"]) * 4
    )
    assert summary["meta_train"]["tasks_completed"] + summary["meta_train"]["tasks_failed"] == ITERATIONS * 4
    assert "metanas" in done.stdout  # the results table
    from metanas.memory.store import MemoryStore

    # iterations re-run after the kill re-appended under the same keys: still one per task
    assert len(MemoryStore(out / "memory")) == ITERATIONS * 2


@pytest.mark.timeout(300)
def test_async_updates_stream_without_barrier_and_count_stale_updates(
    ray_session, tiny_campaign_dict, tmp_path
):
    # max_staleness 0 with two workers holding two tasks each: a task handed out before
    # the MetaLearner's latest step is stale, and with stale_policy drop it is dropped.
    tiny_campaign_dict["meta_train"].update(
        iterations=6, updates="async", max_staleness=0, stale_policy="drop"
    )
    out = tmp_path / "run"
    summary = run_campaign(parse_campaign(tiny_campaign_dict), out, progress=False)
    mt = summary["meta_train"]
    assert mt["updates"] == "async"
    assert mt["tasks_completed"] + mt["tasks_failed"] == mt["tasks_planned"] == 6 * 2 * 2
    assert mt["stale_updates"] > 0 and mt["stale_updates_dropped"] == mt["stale_updates"]
    assert mt["updates_applied"] + mt["stale_updates_dropped"] == mt["tasks_completed"]
    state = RunDir(out).latest_checkpoint().state
    assert [row["iteration"] for row in state["curve"]] == list(range(6))
    assert state["iteration"] == 6 and state["finished"] == {"below": 24, "above": []}
    streams = state["meta_learner"]["streams"]
    # each learner took a step per meta_batch (2) applied updates, the last one flushed
    assert all(s["buffered"] == 0 and 1 <= s["version"] <= 6 for s in streams.values())
    from metanas.memory.store import MemoryStore

    keys = MemoryStore(out / "memory").keys()
    assert len(keys) == len(set(keys)) == 6 * 2


def test_campaign_writes_one_memory_record_per_finished_task(finished_run):
    from metanas.memory.store import MemoryStore
    from metanas.searchers.darts.cell_space import CellSpace

    out, summary = finished_run
    store = MemoryStore(out / "memory")
    keys = store.keys()
    # one record per supernet task (reptile_fixed tasks are not searches)
    assert len(keys) == len(set(keys)) == summary["meta_train"]["tasks_completed"] // 2
    record = store.get(keys[0])
    assert record.searcher == "darts" and record.family == "digits"
    assert record.space_signature == CellSpace(nodes=1, channels=4, cells=1).search_space.signature
    assert CellSpace(nodes=1, channels=4, cells=1).config_to_genotype(record.best_config)


@pytest.mark.timeout(120)
def test_asking_for_more_gpus_than_exist_fails_in_time_naming_the_gpus(
    ray_session, tiny_campaign_dict, tmp_path
):
    tiny_campaign_dict["workers"].update(count=2, gpus_per_worker=1, start_timeout_s=3)
    start = time.time()
    with pytest.raises(TimeoutError, match=r"need 2 GPU \(2 x 1\) but the cluster has 0 GPU"):
        run_campaign(parse_campaign(tiny_campaign_dict), tmp_path / "run", progress=False)
    assert time.time() - start < 60
