"""A campaign with a hardware budget, end to end on a real local Ray: the limits reach the
workers, every derived genotype respects them, the report measures each genotype on this
CPU and draws the Pareto front; `metanas.load` derives within the same limits. Then
`metanas explain` on that run, opened in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

import metanas
from metanas.cluster.hardware import LIMITS_FILE, TABLE_FILE, load_limits
from metanas.platform.campaign import run_campaign
from metanas.platform.config import ConfigError, load_campaign, parse_campaign
from metanas.searchers.darts.cost import params_cost

pytestmark = pytest.mark.ray


def _constrained(tiny: dict) -> dict:
    cfg = {**tiny, "space": {"nodes": 2, "channels": 4, "cells": 1}}
    campaign = parse_campaign(cfg)
    shape = campaign.network_shape()
    cost = params_cost(shape.space, shape.image_size, 1, shape.n_classes)
    ops = [op for op in shape.space.ops if op != "none"]
    costs = sorted(cost.of((a, b, c)) for a in ops for b in ops for c in ops)
    # A binding budget (a third of the genotypes fit), and a latency limit no network reaches.
    cfg["constraints"] = {"max_params": int(costs[len(costs) // 3]), "max_latency_ms": 1000.0, "weight": 2.0}
    cfg["meta_test"] = {
        **tiny["meta_test"],
        "baselines": ["metanas_derived", "scratch"],
        "derived_channels": 4,
    }
    cfg["meta_train"] = {**tiny["meta_train"], "updates": "async"}  # (the report's staleness histogram)
    return cfg


@pytest.fixture(scope="module")
def constrained_run(ray_session, tmp_path_factory):
    from tests.conftest import TINY_CAMPAIGN

    cfg = _constrained(TINY_CAMPAIGN)
    out = tmp_path_factory.mktemp("constrained")
    return out, run_campaign(parse_campaign(cfg), out, progress=False), cfg


@pytest.mark.timeout(300)
def test_every_derived_genotype_respects_the_budget_and_the_report_measures_them(constrained_run):
    out, summary, cfg = constrained_run
    limit = cfg["constraints"]["max_params"]
    hw = summary["hardware"]
    assert json.loads((out / "summary.json").read_text())["hardware"] == hw
    assert hw["max_params"] == limit and hw["tasks_within"] == 1.0
    assert sum(g["tasks"] for g in hw["genotypes"]) == summary["meta_test"]["tasks"]
    for g in hw["genotypes"] + [hw["derived"]]:
        assert g["params"] <= limit and g["within"]
        assert g["latency_ms"] > 0 and g["predicted_latency_ms"] > 0 and g["flops"] > 0
    assert hw["derived"]["genotype"] == summary["meta_test"]["genotype"]
    assert hw["derived"]["accuracy"] == summary["meta_test"]["accuracy"]["metanas_derived"]["mean"]
    assert hw["pareto"] and all(p in [g["genotype"] for g in hw["genotypes"]] for p in hw["pareto"])
    assert {"latency_ms", "params"} == {limit["cost"] for limit in hw["limits"]}
    assert (out / "hardware.png").stat().st_size > 1000
    assert (out / TABLE_FILE).exists() and (out / LIMITS_FILE).exists()


@pytest.mark.timeout(120)
def test_load_derives_within_the_campaigns_limits(constrained_run):
    from sklearn.datasets import load_digits

    out, summary, cfg = constrained_run
    limits = load_limits(out)
    learner = metanas.load(out)
    assert [lim.to_dict() for lim in learner.settings.limits] == [lim.to_dict() for lim in limits]
    digits = load_digits()
    pick = [list(digits.target).index(d) for d in range(5)]
    genotype = learner.adapt(digits.images[pick] / 16.0, digits.target[pick]).genotype
    params = next(limit for limit in limits if limit.cost.name == "params")
    assert params.cost.of(genotype) <= cfg["constraints"]["max_params"]


def test_a_missing_latency_table_is_one_line_before_ray(tiny_campaign_dict, tmp_path):
    cfg = {
        **tiny_campaign_dict,
        "constraints": {"max_latency_ms": 1.0, "latency_table": "tables/none.parquet"},
    }
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg))
    campaign = load_campaign(path)  # the table is relative to the campaign file
    assert campaign.constraints.latency_table == str(tmp_path / "tables" / "none.parquet")
    with pytest.raises(FileNotFoundError, match="none.parquet does not exist"):
        run_campaign(campaign, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "campaign.yaml").exists()
    with pytest.raises(ConfigError, match="constraints.max_params"):
        parse_campaign({**tiny_campaign_dict, "constraints": {"max_params": 0}})


def _summary_value(summary: dict, key: str):
    value = summary
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def _check_numbers(page: str, summary: dict) -> int:
    """Every tagged number on the page equals summary.json's at the shown precision."""
    tagged = re.findall(r'data-key="([^"]+)">([^<]*)<', page)
    for key, text in tagged:
        value = _summary_value(summary, key)
        if isinstance(value, list):
            assert text == ", ".join(value), key
        elif isinstance(value, float):
            digits = len(text.split(".")[1]) if "." in text else 0
            assert float(text) == pytest.approx(value, abs=0.6 * 10**-digits), key
        else:
            assert text == ("" if value is None else str(value)), key
    return len(tagged)


@pytest.mark.timeout(120)
def test_explain_report_renders_in_chromium_with_the_summarys_numbers(constrained_run, tmp_path):
    from metanas.platform.explain_campaign import write_explain

    out, summary, _ = constrained_run
    path = write_explain(out, tmp_path / "report.html")
    page = path.read_text()
    assert 'src="http' not in page and page.count("data:image/png;base64,") >= 7  # self-contained
    assert _check_numbers(page, summary) >= 20
    assert 'data-key="hardware.table_check.spearman"' in page  # the table's check, from summary.json
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    ).stdout
    body = re.search(r'<body data-images-total="(\d+)" data-images-rendered="(\d+)"', dom)
    assert body, "the page's render check did not run"
    assert int(body.group(1)) == page.count("<img ") and body.group(1) == body.group(2)
    assert _check_numbers(dom, summary) >= 20  # the numbers as the browser shows them
