"""Bad campaigns fail with one line naming the field, no traceback, before Ray starts."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from metanas.cli.main import demo_config_path
from metanas.platform.config import ConfigError, parse_campaign

CHECK = """
import sys
from metanas.cli.main import main
code = main(sys.argv[1:])
print("RAY_IMPORTED" if "ray" in sys.modules else "RAY_NOT_IMPORTED")
sys.exit(code)
"""


def _bad(campaign: dict, tmp_path, mutate) -> tuple[int, str, str]:
    mutate(campaign)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(campaign))
    proc = subprocess.run(
        [sys.executable, "-c", CHECK, "run", str(path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda c: c["space"].update(ops=["conv_3x3", "conv_9x9"]), "space.ops"),
        (lambda c: c["episodes"].update(k_shot=-1), "episodes.k_shot"),
        (lambda c: c["meta_train"].pop("iterations"), "meta_train.iterations"),
        (lambda c: c["meta_train"].update(iteratons=3), "meta_train.iteratons"),
        (
            lambda c: c["meta_test"].update(fixed_genotype=["conv_3x3", "skip_connect"]),
            "meta_test.fixed_genotype",
        ),
        # strict types: YAML's "125" and true are not numbers
        (lambda c: c["meta_train"].update(iterations="125"), "meta_train.iterations"),
        (lambda c: c["meta_train"].update(iterations=True), "meta_train.iterations"),
        (lambda c: c["space"].update(ops=[]), "space.ops"),
        (lambda c: c["space"].update(ops=["none"]), "space.ops"),
        # checked against the data, still before Ray
        (
            lambda c: c["episodes"].update(n_way=50),
            "episodes.n_way: 50 classes per episode, but the meta-train split has",
        ),
        (lambda c: c["episodes"].update(query=500), "episodes.k_shot + query: an episode takes 501 images"),
        (lambda c: c["episodes"].update(train_shots=500), "episodes.train_shots + train_query"),
        (lambda c: c["data"].update(rotations=[45]), "data.rotations: 45 is not a multiple of 90"),
        (lambda c: c["data"].update(test_classes=100), "data.test_classes"),
        (
            lambda c: c.update(data={"source": "folders", "paths": ["/nonexistent"]}),
            "data: data path '/nonexistent' does not exist",
        ),
        (
            lambda c: c["meta_test"].update(
                evaluations=[{"n_way": 5, "k_shot": 1}, {"n_way": 30, "k_shot": 1}]
            ),
            "meta_test.evaluations.1.n_way: 30 classes per episode, but the meta-test split has 12",
        ),
    ],
)
def test_malformed_campaign_fails_with_one_line_naming_the_field(tiny_campaign_dict, tmp_path, mutate, field):
    code, out, err = _bad(tiny_campaign_dict, tmp_path, mutate)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert field in lines[0] and "Traceback" not in err
    assert "RAY_NOT_IMPORTED" in out  # failed before Ray was even imported
    assert not (tmp_path / "out").exists()


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        from metanas.platform.config import load_campaign

        load_campaign(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        parse_campaign([1, 2])


def test_demo_campaign_ships_in_the_package_and_is_valid():
    campaign = parse_campaign(yaml.safe_load(demo_config_path().read_text()))
    assert campaign.episodes.n_way == 5 and campaign.episodes.k_shot == 1
    assert campaign.meta_test.tasks >= 200
    assert campaign.workers.count == 2


def test_the_derived_network_takes_its_own_width_and_depth(tiny_campaign_dict):
    """DARTS evaluates a found cell in a deeper, wider network than the one it searched:
    derived_channels and derived_cells shape the derived network only."""
    from metanas.cluster.schema import DERIVED

    cfg = {
        **tiny_campaign_dict,
        "meta_test": {**tiny_campaign_dict["meta_test"], "derived_channels": 6, "derived_cells": 3},
    }
    campaign = parse_campaign(cfg)
    genotype = ("conv_3x3",) * len(campaign.space.cell_space().edges)
    derived = campaign.model_spec(DERIVED, genotype).build(seed=0)
    assert len(derived.cells) == 3 and derived.stem[0].out_channels == 6
    supernet = campaign.model_spec("metanas").build(seed=0)
    assert len(supernet.cells) == campaign.space.cells == 1 and supernet.stem[0].out_channels == 4
    assert campaign.network_shape().space.cells == 3
