"""The latency table's calibration on whole networks, and what happens when a table is
wrong for the machine: `metanas hw check` says so, a campaign with a latency limit warns
in one line, or with `constraints.strict` refuses before any work starts."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from metanas.cli.main import main
from metanas.cluster.hardware import CHECK_FILE, campaign_limits
from metanas.platform.campaign import run_campaign
from metanas.platform.config import ConfigError, parse_campaign
from metanas.searchers.darts.cost import edge_sites
from metanas.searchers.darts.latency import profile
from metanas.searchers.darts.latency_fit import fit_latency

OPS = ("none", "skip_connect", "conv_3x3", "sep_conv_3x3")


@pytest.mark.parametrize("seed", range(5))
def test_the_fit_recovers_a_network_latency_made_of_scaled_ops_and_per_place_costs(seed):
    rng = np.random.default_rng(seed)
    slots = 6
    places = rng.integers(1, 3, size=(slots, len(OPS))).astype(float)
    places[:, 0] = 0  # 'none' runs nowhere
    table = places * rng.uniform(0.01, 0.5, size=(slots, len(OPS)))
    scale, per_place, constant = rng.uniform(0.5, 2.0, len(OPS)), rng.uniform(-0.02, 0.05, len(OPS)), 0.3

    def truth(g):
        o = [OPS.index(op) for op in g]
        return constant + sum(scale[k] * table[s, k] + per_place[k] * places[s, k] for s, k in enumerate(o))

    genotypes = [tuple(rng.choice(OPS[1:], size=slots)) for _ in range(96)]
    cost = fit_latency(OPS, table, places, [(g, truth(g)) for g in genotypes[:64]])
    fresh = genotypes[64:]
    true = np.array([truth(g) for g in fresh])
    fitted = np.array([cost.of(g) for g in fresh])
    plain = np.array([sum(table[s, OPS.index(op)] for s, op in enumerate(g)) for g in fresh])
    plain += np.median(true - plain)  # the old prediction: the op sum plus a median constant
    assert np.allclose(fitted, true, rtol=0.05)  # (the ridge's pull towards the op sum: ~1%)
    assert np.abs(fitted - true).mean() < np.abs(plain - true).mean() / 3
    # a sum over slots still: 'none' costs nothing and no real op less than it
    assert (cost.per_slot[:, 0] == 0).all() and (cost.per_slot[:, 1:] >= 0).all()
    with pytest.raises(ValueError, match="no measured networks"):
        fit_latency(OPS, table, places, [])


def _space(tiny: dict) -> dict:
    return {**tiny, "space": {"nodes": 2, "channels": 8, "cells": 2}}


@pytest.fixture(scope="module")
def wrong_table(tmp_path_factory):
    """A table of this machine's fingerprint whose op latencies are turned upside down (the
    slowest op the fastest), its networks consistent with them: calibration cannot save it."""
    from tests.conftest import TINY_CAMPAIGN

    shape = parse_campaign(_space(TINY_CAMPAIGN)).network_shape()
    table = profile(shape, networks=8)
    ops = [r for r in table.rows if r["kind"] == "op"]
    low, high = min(r["latency_ms"] for r in ops), max(r["latency_ms"] for r in ops)
    latency = {}
    for r in ops:
        r["latency_ms"] = high + low - r["latency_ms"]
        latency[r["op"], r["channels"], r["height"], r["width"], r["stride"]] = r["latency_ms"]
    sites = edge_sites(shape.space, shape.image_size, shape.in_channels)
    for r in table.rows:
        if r["kind"] == "network":
            g = r["genotype"].split(",")
            r["latency_ms"] = 0.1 + sum(
                latency[g[s.slot], s.channels, s.height, s.width, s.stride] for s in sites
            )
    path = tmp_path_factory.mktemp("tables") / "wrong.parquet"
    table.save(path)
    return path


def _constrained(tiny: dict, table, strict: bool) -> dict:
    limits = {"max_latency_ms": 100.0, "latency_table": str(table), "strict": strict}
    return {**_space(tiny), "constraints": limits}


def test_a_wrong_table_warns_in_one_line_and_the_check_is_kept(
    wrong_table, tiny_campaign_dict, tmp_path, caplog
):
    campaign = parse_campaign(_constrained(tiny_campaign_dict, wrong_table, strict=False))
    with caplog.at_level(logging.WARNING, logger="metanas.cluster.hardware"):
        campaign_limits(campaign, tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert "rerun `metanas hw profile` on this device" in warnings[0]
    check = json.loads((tmp_path / CHECK_FILE).read_text())
    assert check["networks"] == 30 and check["spearman"] < 0.9


def test_a_wrong_table_with_strict_constraints_refuses_before_any_work(
    wrong_table, tiny_campaign_dict, tmp_path
):
    campaign = parse_campaign(_constrained(tiny_campaign_dict, wrong_table, strict=True))
    with pytest.raises(
        ConfigError, match=r"^constraints.strict: the latency table .* Spearman -?0\.\d+ \(< 0.9\)"
    ) as err:
        run_campaign(campaign, tmp_path / "out", progress=False)  # (no Ray: it fails before)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out" / "campaign.yaml").exists()


def test_hw_check_says_a_wrong_table_is_wrong(wrong_table, tiny_campaign_dict, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(_space(tiny_campaign_dict)))
    code = main(["hw", "check", str(config), "--table", str(wrong_table), "--networks", "20", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and result["trusted"] is False and result["spearman"] < 0.9 and result["networks"] == 20


def test_a_table_that_ranks_well_but_is_off_in_scale_warns_about_the_scale(tmp_path, caplog):
    """Every latency three times what this machine measures (as a table profiled on a busier
    machine would be): the ranking holds, the limit's scale does not."""
    from metanas.cluster.schema import Constraints
    from metanas.platform.config import demo_config_path, load_campaign

    demo = load_campaign(demo_config_path())
    table = profile(demo.network_shape(), networks=16)
    for r in table.rows:
        r["latency_ms"] *= 3
    path = table.save(tmp_path / "slow.parquet")
    limits = Constraints(max_latency_ms=100.0, latency_table=str(path))
    with caplog.at_level(logging.WARNING, logger="metanas.cluster.hardware"):
        campaign_limits(demo.model_copy(update={"constraints": limits}), tmp_path / "run")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "% off on 30 fresh networks" in warnings[0], warnings
    check = json.loads((tmp_path / "run" / CHECK_FILE).read_text())
    assert check["spearman"] >= 0.9 and check["mape"] > 1.0  # (predicted 3x: 200% off)
