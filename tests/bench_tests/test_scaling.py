"""`metanas bench scaling` on the tiny campaign: the keys and shapes the issue asks for, for
both update modes (the numbers themselves are measured by the bench, not asserted here)."""

from __future__ import annotations

import pytest

from metanas.bench.scaling import bench_scaling
from metanas.platform.config import parse_campaign

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


def test_bench_scaling_reports_throughput_efficiency_and_overhead_per_mode(ray_session, tiny_campaign_dict):
    result = bench_scaling(
        parse_campaign(tiny_campaign_dict), iterations=2, multinode=False, straggler=2.0, repeats=1
    )
    assert result["workers"] == [1, 2] and result["updates"] == "async"
    assert set(result["modes"]) == {"async", "sync"}
    for numbers in [result, *result["modes"].values()]:
        assert len(numbers["tasks_per_s"]) == 2 and all(x > 0 for x in numbers["tasks_per_s"])
        expected = numbers["tasks_per_s"][1] / (2 * numbers["tasks_per_s"][0])
        assert numbers["parallel_efficiency"] == pytest.approx(expected, abs=0.002)
        assert 0 <= numbers["ray_overhead_fraction"] < 1
    assert result["modes"]["sync"]["stale_updates"] == 0
    plain = result["plain_processes"]  # the same tasks without Ray, in 1 and 2 processes
    assert len(plain["tasks_per_s"]) == 2 and all(x > 0 for x in plain["tasks_per_s"])
    assert plain["parallel_efficiency"] == pytest.approx(
        plain["tasks_per_s"][1] / (2 * plain["tasks_per_s"][0]), abs=0.002
    )
    straggler = result["straggler"]  # one worker simulated 2x slower, in both modes
    assert straggler["slowdown"] == 2.0 and set(straggler["tasks_per_s"]) == {"async", "sync"}
    assert straggler["async_over_sync"] == pytest.approx(
        straggler["tasks_per_s"]["async"] / straggler["tasks_per_s"]["sync"], abs=0.002
    )


@pytest.mark.timeout(180)
def test_driver_memory_bench_samples_the_drivers_rss_as_tasks_finish(ray_session):
    from metanas.bench.driver_memory import bench_driver_memory

    result = bench_driver_memory(160)
    assert result["tasks"] == 160 and result["rss_mb_after_16"] > 0 and result["rss_mb_after_160"] > 0
    assert result["ratio"] == pytest.approx(result["rss_mb_after_160"] / result["rss_mb_after_16"], abs=0.01)
