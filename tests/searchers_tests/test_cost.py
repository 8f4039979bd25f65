"""Hardware cost: exact parameter counts, the latency table, the cost penalty in the
architecture's loss, constrained derivation and Pareto fronts. Real torch, real Parquet;
latency is measured on this CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metanas.searchers.darts.adaptation import AdaptSettings, adapt
from metanas.searchers.darts.cell_space import CellSpace
from metanas.searchers.darts.cost import CostLimit, LinearCost, constrained_genotype, edge_sites, params_cost
from metanas.searchers.darts.latency import LatencyTable, NetworkShape, profile, random_genotypes
from metanas.searchers.darts.supernet import DiscreteNet, Supernet
from metanas.searchers.pareto import pareto_front

SPACES = [
    CellSpace(nodes=2, channels=8, cells=2),
    CellSpace(nodes=2, channels=8, cells=2, reduction=True, input_cells=2),
    CellSpace(nodes=3, channels=4, cells=3, input_cells=2),
]


@pytest.mark.parametrize("space", SPACES, ids=["plain", "reduction_in2", "n3_in2"])
def test_params_cost_is_exact_for_every_genotype(space):
    cost = params_cost(space, (12, 12), 1, 5)
    for g in random_genotypes(space, 12, seed=1):
        assert cost.of(g) == sum(p.numel() for p in DiscreteNet(space, g, 1, 5).parameters())


def test_edge_sites_cover_every_edge_of_every_cell_at_its_size():
    space = SPACES[1]  # normal, reduction, normal
    sites = edge_sites(space, (12, 12))
    assert len(sites) == 3 * len(space.edges)
    reduce = [s for s in sites if s.cell == 1]
    assert all(s.slot >= len(space.edges) for s in reduce)
    assert {(s.height, s.stride) for s in reduce if s.stride == 2} == {(12, 2)}  # edges from the cell inputs
    assert {s.height for s in sites if s.cell == 2} == {6}


def _toy_cost(space: CellSpace) -> LinearCost:
    """Made-up latencies: convolutions dear, pools and skip cheap, per slot."""
    price = {
        "none": 0.0,
        "skip_connect": 0.01,
        "conv_3x3": 1.0,
        "sep_conv_3x3": 0.6,
        "dil_conv_3x3": 0.7,
        "max_pool_3x3": 0.1,
        "avg_pool_3x3": 0.12,
    }
    per_slot = np.array([[price[o] * (1 + 0.1 * s) for o in space.ops] for s in range(len(space.edge_names))])
    return LinearCost("latency_ms", space.ops, per_slot, 0.5)


def test_the_cost_penalty_lowers_the_expected_latency_of_alpha():
    torch.manual_seed(0)
    space = CellSpace(nodes=2, channels=4, cells=1)
    x, y = torch.randn(20, 1, 8, 8), torch.arange(20) % 4
    cost = _toy_cost(space)

    def expected_after(limits) -> float:
        net = Supernet(space, 1, 4)
        with torch.no_grad():  # start where the convolutions are favoured
            net.alpha[:, space.ops.index("conv_3x3")] = 2.0
        adapt(net, x, y, x, y, AdaptSettings(steps=30, lr_w=0.01, lr_alpha=0.05, limits=limits), seed=0)
        return float(cost.expected(net).detach())

    free = expected_after(())
    limited = expected_after((CostLimit(cost, limit=1.0, weight=5.0),))
    assert limited < free - 0.3, (free, limited)


@pytest.mark.parametrize("space", SPACES[:2], ids=["plain", "reduction_in2"])
def test_a_constrained_derivation_never_exceeds_the_limit(space):
    rng = np.random.default_rng(0)
    cost = _toy_cost(space)
    cheapest = cost.constant + sum(
        min(row[o] for o, op in enumerate(space.ops) if op != "none") for row in cost.per_slot
    )
    for _ in range(200):
        alphas = [
            torch.as_tensor(rng.normal(size=(len(space.edges), len(space.ops))), dtype=torch.float32)
            for _ in range(2 if space.reduction else 1)
        ]
        limit = cheapest + rng.uniform(0.0, 3.0)
        g = constrained_genotype(space, alphas, [CostLimit(cost, limit)])
        assert cost.of(g) <= limit + 1e-9 and "none" not in g
        free = space.derive_genotype(*alphas)
        if cost.of(free) <= limit:
            assert g == free  # within the limit already: the argmax stands


def test_a_limit_no_genotype_meets_gives_the_cheapest():
    space = CellSpace(nodes=2, channels=4, cells=1)
    cost = _toy_cost(space)
    g = constrained_genotype(space, [torch.randn(3, 7)], [CostLimit(cost, 0.1)])
    assert g == ("skip_connect",) * 3


def test_pareto_front_of_a_known_table_is_exact():
    points = [
        {"acc": 0.90, "ms": 5.0},  # 0 front (most accurate)
        {"acc": 0.80, "ms": 2.0},  # 1 front
        {"acc": 0.80, "ms": 3.0},  # 2 dominated by 1
        {"acc": 0.70, "ms": 1.0},  # 3 front (fastest)
        {"acc": 0.60, "ms": 1.5},  # 4 dominated by 3
        {"acc": 0.90, "ms": 5.0},  # 5 equal to 0: kept
        {"acc": 0.85, "ms": 4.0},  # 6 front
    ]
    assert pareto_front(points, {"acc": "max", "ms": "min"}) == [0, 1, 3, 5, 6]
    assert pareto_front(points, {"acc": "min", "ms": "max"}) == [0, 2, 4, 5, 6]
    with pytest.raises(ValueError, match="'max' or 'min'"):
        pareto_front(points, {"acc": "up"})


def test_latency_table_predicts_measured_networks_and_keeps_other_devices(tmp_path):
    space = CellSpace(nodes=2, channels=8, cells=2)
    shape = NetworkShape(space, (8, 8), 5)
    table = profile(shape, networks=4, seed=0)
    cost = table.latency_cost(shape)
    assert cost.per_slot.shape == (3, len(space.ops)) and cost.per_slot[:, space.ops.index("none")].sum() == 0
    # A conv costs more than a skip connection wherever it sits (measured, with a wide margin).
    assert (
        cost.per_slot[:, space.ops.index("conv_3x3")] > cost.per_slot[:, space.ops.index("skip_connect")]
    ).all()
    path = table.save(tmp_path / "t.parquet")
    other = LatencyTable([{**r, "device": "cuda:Other|torch x"} for r in table.rows])
    other.save(path)
    loaded = LatencyTable.load(path)
    assert len(loaded.devices) == 2 and len(loaded.rows) == 2 * len(table.rows)
    with pytest.raises(ValueError, match="holds 2 devices"):
        loaded.latency_cost(shape)
    again = loaded.for_device(table.devices[0]).latency_cost(shape)
    assert np.allclose(again.per_slot, cost.per_slot) and again.constant == pytest.approx(cost.constant)
    wider = NetworkShape(CellSpace(nodes=2, channels=16, cells=2), (8, 8), 5)
    with pytest.raises(ValueError, match="no .* at 16 channels"):
        table.latency_cost(wider)
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="not a readable Parquet"):
        LatencyTable.load(tmp_path / "bad.parquet")
