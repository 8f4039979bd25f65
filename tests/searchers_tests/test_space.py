from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from metanas.searchers.darts.cell_space import ALL_OPS, CellSpace
from metanas.searchers.darts.cpu_kernels import AvgPool3x3, DilatedDepthwiseConv, GroupNorm
from metanas.searchers.darts.supernet import DiscreteNet, Supernet
from metanas.searchers.space import Categorical, Float, Int, SearchSpace


def _space() -> SearchSpace:
    return SearchSpace(
        (Categorical("op", ("a", "b")), Int("n", 1, 8), Float("lr", 1e-4, 1e-1, log=True)), name="s"
    )


def test_validate_names_the_bad_parameter():
    space = _space()
    assert space.validate({"op": "a", "n": 3, "lr": 0.01}) == {"op": "a", "n": 3, "lr": 0.01}
    with pytest.raises(ValueError, match="'op'"):
        space.validate({"op": "c", "n": 3, "lr": 0.01})
    with pytest.raises(ValueError, match="'n'"):
        space.validate({"op": "a", "n": 9, "lr": 0.01})
    with pytest.raises(ValueError, match="missing"):
        space.validate({"op": "a"})


def test_sample_encode_and_signature():
    space = _space()
    for seed in range(20):
        cfg = space.sample(random.Random(seed))
        space.validate(cfg)
        vec = space.encode(cfg)
        assert len(vec) == 4 and all(0.0 <= v <= 1.0 for v in vec)
    assert space.signature == _space().signature
    other = SearchSpace(
        (Categorical("op", ("a", "b", "c")), Int("n", 1, 8), Float("lr", 1e-4, 1e-1, log=True))
    )
    assert other.signature != space.signature


def test_cell_space_is_a_search_space_and_genotypes_round_trip():
    cell = CellSpace(nodes=3, channels=4, cells=2)
    space = cell.search_space
    assert len(space.params) == len(cell.edges) == 6
    rng = random.Random(0)
    for _ in range(10):
        config = space.sample(rng)
        genotype = cell.config_to_genotype(config)
        assert cell.genotype_to_config(genotype) == config
    with pytest.raises(ValueError, match="unknown op"):
        CellSpace(ops=("conv_3x3", "conv_9x9"))


def test_derive_genotype_picks_strongest_op_but_never_none():
    cell = CellSpace(nodes=1, channels=4, cells=1)
    alpha = torch.zeros(1, len(ALL_OPS))
    alpha[0, ALL_OPS.index("none")] = 5.0
    alpha[0, ALL_OPS.index("sep_conv_3x3")] = 2.0
    assert cell.derive_genotype(alpha) == ("sep_conv_3x3",)


def test_supernet_and_discrete_network_from_its_genotype():
    cell = CellSpace(nodes=2, channels=4, cells=2)
    net = Supernet(cell, in_channels=1, n_classes=5)
    x = torch.rand(6, 1, 8, 8)
    assert net(x).shape == (6, 5)
    with torch.no_grad():
        net.alpha.zero_()
        net.alpha[:, ALL_OPS.index("dil_conv_3x3")] = 1.0
    genotype = net.genotype()
    assert genotype == ("dil_conv_3x3",) * 3
    discrete = DiscreteNet(cell, genotype, in_channels=1, n_classes=5)
    assert discrete(x).shape == (6, 5)
    # the discrete net runs exactly one op per edge: far fewer weights than the supernet
    assert sum(p.numel() for p in discrete.parameters()) < sum(p.numel() for p in net.parameters())
    with pytest.raises(ValueError):
        DiscreteNet(cell, ("conv_3x3",), 1, 5)


def test_the_speed_settings_change_nothing_but_rounding():
    import torch

    from metanas.searchers.darts.supernet import Speed

    space = CellSpace(nodes=3, channels=8, cells=2)
    x = torch.rand(6, 1, 12, 12)
    outs, grads = [], []
    for speed in (
        Speed(channels_last=False, shared_relu=False, own_cpu_kernels=False, fused_sum=False),
        Speed(),
    ):
        torch.manual_seed(0)
        net = Supernet(space, 1, 3, speed)
        loss = net(x).square().sum()
        loss.backward()
        outs.append(net(x).detach())
        grads.append({n: p.grad.clone() for n, p in net.named_parameters()})
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-4) for n in grads[0])
    assert dict(net.named_parameters())["stem.0.weight"].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("size", [12, 7])  # even: by phases; odd: the library's weight gradient
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_dilated_depthwise_backward_gives_the_library_gradients(size, layout):
    torch.manual_seed(0)
    fast = DilatedDepthwiseConv(5, 2)
    plain = nn.Conv2d(5, 5, 3, padding=2, dilation=2, groups=5, bias=False)
    plain.weight.data.copy_(fast.weight.data)
    x = torch.randn(4, 5, size, size).contiguous(memory_format=layout)
    g = torch.randn(4, 5, size, size)
    grads = []
    for conv in (fast, plain):
        xi = x.clone().requires_grad_()
        out = conv(xi)
        out.backward(g)
        grads.append((out.detach(), xi.grad, conv.weight.grad))
    for mine, theirs in zip(*grads):
        assert mine.shape == theirs.shape and torch.allclose(mine, theirs, atol=1e-4)
    assert grads[0][2].abs().sum() > 0
    fast.weight.grad = None  # an input that needs no gradient: the weight's alone
    fast(x).backward(g)
    assert torch.allclose(fast.weight.grad, grads[1][2], atol=1e-4)


@pytest.mark.parametrize("size", [16, 7])  # 16x16: our kernels; 7x7: GroupNorm falls back to the library's
def test_the_own_pooling_and_group_norm_kernels_give_the_library_results(size):
    torch.manual_seed(0)
    x = torch.randn(3, 8, size, size).contiguous(memory_format=torch.channels_last)
    g = torch.randn(3, 8, size, size)
    pairs = (
        (AvgPool3x3(), nn.AvgPool2d(3, 1, 1, count_include_pad=False)),
        (GroupNorm(4, 8, affine=False), nn.GroupNorm(4, 8, affine=False)),
    )
    for mine, theirs in pairs:
        results = []
        for module in (mine, theirs):
            xi = x.clone().requires_grad_()
            out = module(xi)
            out.backward(g)
            results.append((out.detach(), xi.grad))
        for a, b in zip(*results):
            assert torch.allclose(a, b, atol=1e-4), type(mine).__name__
    # a large mean must not cancel the variance (float64 is the reference)
    offset = (100 + 0.01 * torch.randn(2, 8, 16, 16)).contiguous(memory_format=torch.channels_last)
    exact = nn.functional.group_norm(offset.double(), 4)
    assert (GroupNorm(4, 8, affine=False)(offset) - exact).abs().max() < 0.01


def test_bench_step_reports_both_variants():
    from metanas.bench.step import bench_step

    r = bench_step(image_size=8, batch=4, channels=4, cells=1, nodes=1, rounds=1, steps=1)
    assert set(r["step_ms"]) == {"before", "channels_last", "after"} and r["speedup"] > 0


@pytest.mark.parametrize(
    "low, high, step", [(-10.2, 10.2, 0.1), (0.0, 1.0, 0.3), (1e-3, 0.1, 0.01), (3, 10, 2), (1, 100, 7)]
)
def test_a_stepped_range_is_optunas_distribution_of_it(low, high, step):
    """The grid ends where Optuna's ends (decimal arithmetic: -10.2..10.2 by 0.1 keeps
    10.2), so the memory's model answers for such a parameter, both ways round."""
    import warnings

    import optuna.distributions as od

    from metanas.searchers.optuna_search import from_optuna, to_optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (Optuna's note that it moved high)
        dist = (
            od.IntDistribution(low, high, step=step)
            if isinstance(step, int)
            else od.FloatDistribution(low, high, step=step)
        )
    param = (Int if isinstance(step, int) else Float)("x", low, high, step=step)
    assert to_optuna(param) == dist and from_optuna("x", dist) == param
    assert all(dist._contains(dist.to_internal_repr(param.sample(random.Random(i)))) for i in range(50))
