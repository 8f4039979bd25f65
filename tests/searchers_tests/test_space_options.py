"""The MetaNAS search-space options: reduction cells, two cell inputs, drop path, softmax
temperature, and (at adaptation) an architecture-step fraction and op pruning. Their
defaults must leave the networks exactly as they were."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
import torch.nn.functional as F

from metanas.searchers.darts.adaptation import (
    AdaptSettings,
    adapt,
    evaluate,
    init_head_from_prototypes,
    prune_ops,
)
from metanas.searchers.darts.cell_space import ALL_OPS, CellSpace
from metanas.searchers.darts.ops import drop_path, make_op
from metanas.searchers.darts.reptile import (
    AsyncReptile,
    MetaSchedule,
    StalenessBound,
    is_arch_param,
    reptile_step,
)
from metanas.searchers.darts.supernet import DiscreteNet, Speed, Supernet

COMBOS = list(itertools.product((False, True), (1, 2), (2, 3, 4)))  # reduction, input_cells, nodes


def _x(n: int = 5, size: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


# -- defaults change nothing -----------------------------------------------------------------


def test_defaults_add_no_parameters_edges_or_search_parameters():
    space = CellSpace(nodes=2, channels=4, cells=2)
    assert (space.reduction, space.input_cells, space.drop_path) == (False, 1, 0.0)
    assert len(space.edges) == 3 and space.edges == [(0, 0), (1, 0), (1, 1)]
    assert CellSpace(nodes=4).edges == [(i, j) for i in range(4) for j in range(i + 1)]
    # the signature of stored genotypes is that of the space before the options existed
    assert space.search_space.name == "darts_cell_n2" and space.search_space.signature == "0cc2322666a6b492"
    torch.manual_seed(0)
    net = Supernet(space, 1, 3)
    keys = list(net.state_dict())
    assert len(keys) == 42 and keys[0] == "alpha"  # as before: alpha, then 41 network entries
    assert not [k for k in keys if "alpha_reduce" in k or ".pre0." in k or ".pre1." in k]
    assert len(net.cells) == 2 and net.arch_parameters() == [net.alpha]
    assert net.temperature == 1.0 and net.drop_path_active is False
    discrete = DiscreteNet(space, ("conv_3x3", "skip_connect", "sep_conv_3x3"), 1, 3)
    assert len(discrete.state_dict()) == 17


def test_defaults_give_the_outputs_they_gave_before_the_options():
    # pinned from the networks before the options existed (same seed, same input)
    space = CellSpace(nodes=2, channels=4, cells=2)
    x = _x(5, 12)
    torch.manual_seed(0)
    out = Supernet(space, 1, 3)(x).detach().flatten()[:3]
    assert torch.allclose(
        out, torch.tensor([0.2232101857662201, -0.1253974884748459, 0.25911980867385864]), atol=1e-4
    )
    torch.manual_seed(0)
    out = DiscreteNet(space, ("conv_3x3", "skip_connect", "sep_conv_3x3"), 1, 3)(x).detach().flatten()[:3]
    assert torch.allclose(
        out, torch.tensor([0.25843721628189087, -0.05084748566150665, -0.23163917660713196]), atol=1e-4
    )


# -- the space -------------------------------------------------------------------------------


def test_options_are_validated_and_round_trip_through_to_dict():
    space = CellSpace(
        nodes=3, channels=4, cells=3, reduction=True, input_cells=2, drop_path=0.3, feature_grid=2
    )
    assert CellSpace(**space.to_dict()) == space
    for bad in (
        dict(feature_grid=0),
        dict(input_cells=3),
        dict(input_cells=0),
        dict(drop_path=1.0),
        dict(drop_path=-0.1),
        dict(reduction=True, channels=1),
        dict(reduction=True, cells=1),
    ):
        with pytest.raises(ValueError):
            CellSpace(**bad)


@pytest.mark.parametrize("reduction,input_cells,nodes", COMBOS)
def test_edges_names_and_genotypes_round_trip(reduction, input_cells, nodes):
    space = CellSpace(nodes=nodes, channels=4, cells=2, reduction=reduction, input_cells=input_cells)
    per_cell = nodes * (nodes + 1) // 2 if input_cells == 1 else nodes * (nodes + 3) // 2
    assert len(space.edges) == per_cell
    names = space.edge_names
    assert len(names) == len(set(names)) == per_cell * (2 if reduction else 1)
    assert ("reduce_edge_n0_s0" in names) == reduction and ("edge_n0_s1" in names) == (input_cells == 2)
    rng = random.Random(0)
    for _ in range(5):
        config = space.search_space.sample(rng)
        genotype = space.config_to_genotype(config)
        assert len(genotype) == len(names) and space.genotype_to_config(genotype) == config
    with pytest.raises(ValueError):
        space.genotype_to_config(genotype[:-1])


@pytest.mark.parametrize("grid", [1, 2])
def test_the_head_reads_the_feature_grid_and_global_pooling_ignores_where(grid):
    space = CellSpace(channels=4, feature_grid=grid)
    net = DiscreteNet(space, ("conv_3x3",) * len(space.edges), 1, 3)
    assert net.classifier.in_features == 4 * grid * grid
    x = torch.zeros(1, 1, 16, 16)
    x[..., 2:5, 2:5] = 1.0
    moved = torch.roll(x, shifts=(8, 8), dims=(-2, -1))  # the same blob, in another quadrant
    with torch.no_grad():
        same = torch.allclose(net.features(x), net.features(moved), atol=1e-5)
    assert same == (grid == 1)


def test_the_search_space_changes_with_the_structure_options():
    plain = CellSpace(nodes=2).search_space
    assert CellSpace(nodes=2, reduction=True).search_space.signature != plain.signature
    assert CellSpace(nodes=2, input_cells=2).search_space.signature != plain.signature
    assert CellSpace(nodes=2, drop_path=0.2).search_space.signature == plain.signature  # not searched


def test_derive_genotype_reads_normal_then_reduction_alphas():
    space = CellSpace(nodes=1, channels=4, cells=2, reduction=True)
    alpha, alpha_reduce = torch.zeros(1, len(ALL_OPS)), torch.zeros(1, len(ALL_OPS))
    alpha[0, ALL_OPS.index("sep_conv_3x3")] = 1.0
    alpha_reduce[0, ALL_OPS.index("none")] = 9.0
    alpha_reduce[0, ALL_OPS.index("max_pool_3x3")] = 2.0
    assert space.derive_genotype(alpha, alpha_reduce) == ("sep_conv_3x3", "max_pool_3x3")
    with pytest.raises(ValueError, match="alpha_reduce"):
        space.derive_genotype(alpha)
    with pytest.raises(ValueError):
        CellSpace(nodes=1).derive_genotype(alpha, alpha_reduce)


# -- the networks ----------------------------------------------------------------------------


@pytest.mark.parametrize("op", [o for o in ALL_OPS])
@pytest.mark.parametrize("size", [1, 2, 5, 7, 8])
def test_every_stride_2_op_halves_the_size_rounding_up(op, size):
    out = make_op(op, 4, "group", stride=2)(torch.rand(3, 4, size, size))
    assert out.shape == (3, 4, math.ceil(size / 2), math.ceil(size / 2))


@pytest.mark.parametrize("reduction,input_cells,nodes", COMBOS)
def test_every_combination_runs_at_28_and_8_pixels(reduction, input_cells, nodes):
    space = CellSpace(nodes=nodes, channels=4, cells=2, reduction=reduction, input_cells=input_cells)
    torch.manual_seed(0)
    net = Supernet(space, 1, 3)
    assert len(net.cells) == (3 if reduction else 2)
    assert [c.reduction for c in net.cells] == ([False, True, False] if reduction else [False, False])
    assert len(net.arch_parameters()) == (2 if reduction else 1)
    for a in net.arch_parameters():
        assert a.shape == (len(space.edges), len(space.ops))
    for size in (28, 8):
        out = net(_x(5, size))
        assert out.shape == (5, 3) and torch.isfinite(out).all()
        genotype = net.genotype()
        discrete = DiscreteNet(space, genotype, 1, 3)
        assert discrete(_x(5, size)).shape == (5, 3)
    assert sum(p.numel() for p in discrete.parameters()) < sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("reduction,input_cells", [(True, 1), (True, 2), (False, 2)])
def test_three_cells_halve_the_size_at_each_reduction(reduction, input_cells):
    space = CellSpace(nodes=2, channels=4, cells=3, reduction=reduction, input_cells=input_cells)
    net = Supernet(space, 1, 3)
    sizes = []
    for cell in net.cells:
        cell.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:])))
    assert net(_x(5, 28)).shape == (5, 3)
    if reduction:  # normal 28, reduce 14, normal 14, reduce 7, normal 7
        assert sizes == [(28, 28), (14, 14), (14, 14), (7, 7), (7, 7)]
        if input_cells == 2:  # after a reduction cell s0 is twice s1's size: factorized reduce
            kinds = [type(c.pre0).__name__ for c in net.cells]
            assert kinds == ["ReLUConvBN", "ReLUConvBN", "FactorizedReduce", "ReLUConvBN", "FactorizedReduce"]
    else:  # max pools between the cells
        assert sizes == [(28, 28), (14, 14), (7, 7)]
    sizes.clear()
    assert net(_x(5, 8)).shape == (5, 3)


def test_gradients_reach_both_architecture_parameters():
    space = CellSpace(nodes=2, channels=4, cells=2, reduction=True, input_cells=2)
    net = Supernet(space, 1, 3)
    F.cross_entropy(net(_x(5, 8)), torch.arange(5) % 3).backward()
    assert net.alpha.grad.abs().sum() > 0 and net.alpha_reduce.grad.abs().sum() > 0
    arch = {id(p) for p in net.arch_parameters()}
    weights = net.weight_parameters()
    assert not arch & {id(p) for p in weights}
    assert len(weights) + 2 == len(list(net.parameters()))
    # Reptile tells the architecture parameters by name: the names must be these
    assert {id(p) for n, p in net.named_parameters() if is_arch_param(n)} == arch


@pytest.mark.parametrize("norm", ["group", "batch"])
@pytest.mark.parametrize("reduction,input_cells", [(True, 2), (False, 2), (True, 1)])
def test_the_speed_settings_change_nothing_but_rounding_with_the_options(reduction, input_cells, norm):
    space = CellSpace(nodes=3, channels=8, cells=2, reduction=reduction, input_cells=input_cells, norm=norm)
    x = _x(6, 12)
    outs = []
    for speed in (Speed(channels_last=False, shared_relu=False), Speed()):
        torch.manual_seed(0)
        outs.append(Supernet(space, 1, 3, speed)(x).detach())
    assert torch.allclose(outs[0], outs[1], atol=1e-5)


def test_temperature_sharpens_the_edge_weights():
    net = Supernet(CellSpace(nodes=2, channels=4, cells=2), 1, 3)
    with torch.no_grad():
        net.alpha.copy_(torch.randn_like(net.alpha))
    soft = net.edge_weights()[False][0]
    assert torch.equal(soft, F.softmax(net.alpha, -1))
    net.temperature = 0.05
    sharp = net.edge_weights()[False][0]
    assert (sharp.max(1).values > soft.max(1).values).all()
    assert torch.allclose(sharp, F.softmax(net.alpha / 0.05, -1))


# -- drop path -------------------------------------------------------------------------------


def test_drop_path_zeroes_samples_and_scales_the_rest():
    torch.manual_seed(0)
    out = drop_path(torch.ones(2000, 2, 3, 3), 0.25)
    per_sample = out.flatten(1)
    values = per_sample.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(4 / 3)
    assert (per_sample == per_sample[:, :1]).all()  # whole samples, not single values
    assert 0.2 < (per_sample[:, 0] == 0).float().mean() < 0.3


@pytest.mark.parametrize("discrete", [False, True])
def test_drop_path_acts_only_in_training_with_the_flag(discrete):
    # one non-'none' op on the only edge: a dropped sample's features are exactly zero
    space = CellSpace(nodes=1, ops=("none", "conv_3x3"), channels=4, cells=1, drop_path=0.5)
    torch.manual_seed(0)
    net = DiscreteNet(space, ("conv_3x3",), 1, 3) if discrete else Supernet(space, 1, 3)
    x = _x(32, 8)

    def zero_rows() -> int:
        return int((net.features(x).abs().sum(1) == 0).sum())

    net.train()
    assert zero_rows() == 0  # flag off (the default)
    net.drop_path_active = True
    assert 0 < zero_rows() < 32
    net.eval()
    assert zero_rows() == 0
    net.train()
    net.space = CellSpace(nodes=1, ops=("none", "conv_3x3"), channels=4, cells=1)  # drop_path 0.0
    assert zero_rows() == 0


def test_adapt_turns_drop_path_on_and_evaluation_off():
    space = CellSpace(nodes=1, channels=4, cells=2, drop_path=0.2, reduction=True)
    net = Supernet(space, 1, 3)
    seen = []
    net.register_forward_pre_hook(lambda m, a: seen.append(m.drop_path_active))
    x, y = _x(6, 8), torch.arange(6) % 3
    adapt(net, x, y, x, y, AdaptSettings(steps=2, lr_w=0.01, lr_alpha=0.01))
    assert seen == [True, True] and net.drop_path_active is False
    net.drop_path_active = True
    evaluate(net, x, y)
    assert seen[-1] is False
    net.drop_path_active = True
    init_head_from_prototypes(net, x, y)
    assert net.drop_path_active is False


# -- meta-schedule and Reptile ----------------------------------------------------------------


def test_temperature_schedule_is_geometric_between_its_endpoints():
    s = MetaSchedule(iterations=5, beta_w=1.0, beta_alpha=1.0, temperature_start=1.0, temperature_end=0.05)
    assert s.temperature(0) == 1.0 and s.temperature(4) == 0.05 and s.temperature(100) == 0.05
    assert s.temperature(2) == pytest.approx(math.sqrt(0.05))
    assert s.temperature(1) / s.temperature(0) == pytest.approx(s.temperature(4) / s.temperature(3))
    assert all(MetaSchedule(10, 1.0, 1.0).temperature(i) == 1.0 for i in range(12))
    with pytest.raises(ValueError):
        MetaSchedule(10, 1.0, 1.0, temperature_end=0.0)


def test_reptile_gives_alpha_reduce_the_architecture_step_size():
    assert is_arch_param("alpha") and is_arch_param("alpha_reduce") and not is_arch_param("stem.0.weight")
    theta = {"w": torch.zeros(1), "alpha": torch.zeros(1), "alpha_reduce": torch.zeros(1)}
    delta = {k: torch.ones(1) for k in theta}
    new = reptile_step(theta, [delta], beta_w=1.0, beta_alpha=0.25)
    assert new["w"].item() == 1.0 and new["alpha"].item() == 0.25 and new["alpha_reduce"].item() == 0.25
    stream = AsyncReptile(dict(theta), MetaSchedule(10, 1.0, 0.25), meta_batch=1, bound=StalenessBound(0))
    stream.submit(0, 0, delta)
    assert stream.theta["alpha_reduce"].item() == 0.25 and stream.theta["w"].item() == 1.0


# -- adaptation: alpha fraction and pruning -----------------------------------------------------


def _adapted(steps: int, fraction: float, joint: bool) -> Supernet:
    space = CellSpace(nodes=2, channels=4, cells=2, reduction=True)
    torch.manual_seed(0)
    net = Supernet(space, 1, 3)
    x, y = _x(6, 8, seed=2), torch.arange(6) % 3
    qx, qy = (x, y) if joint else (_x(6, 8, seed=3), torch.arange(6) % 3)
    adapt(net, x, y, qx, qy, AdaptSettings(steps=steps, lr_w=0.05, lr_alpha=0.05, alpha_fraction=fraction))
    return net


@pytest.mark.parametrize("joint", [True, False])
def test_alpha_adapts_only_during_the_first_fraction_of_the_steps(joint):
    with pytest.raises(ValueError):
        AdaptSettings(steps=1, lr_w=0.1, lr_alpha=0.1, alpha_fraction=1.5)
    initial = _adapted(0, 1.0, joint)
    first = _adapted(3, 1.0, joint)  # ceil(0.5 * 5) = 3 architecture steps
    whole = _adapted(5, 0.5, joint)
    for a0, a3, a5 in zip(initial.arch_parameters(), first.arch_parameters(), whole.arch_parameters()):
        assert not torch.equal(a0, a3)  # both alpha and alpha_reduce adapted ...
        assert torch.equal(a3, a5)  # ... and stood still after step 3
    assert not torch.equal(first.stem[0].weight, whole.stem[0].weight)  # while w kept learning
    frozen = _adapted(5, 0.0, joint)
    assert all(torch.equal(a, b) for a, b in zip(initial.arch_parameters(), frozen.arch_parameters()))


def test_pruning_switches_off_weak_ops_but_never_a_whole_edge():
    with pytest.raises(ValueError):
        AdaptSettings(steps=1, lr_w=0.1, lr_alpha=0.1, prune_threshold=1.0)
    space = CellSpace(nodes=2, channels=4, cells=2, reduction=True, input_cells=2)
    torch.manual_seed(0)
    net = Supernet(space, 1, 3)
    x, y = _x(6, 8), torch.arange(6) % 3
    # 7 ops near 1/7 each: a threshold of 0.2 leaves only each edge's genotype op
    adapt(net, x, y, x, y, AdaptSettings(steps=2, lr_w=0.01, lr_alpha=0.01, prune_threshold=0.2))
    genotype = net.genotype()
    n = len(space.edges)
    for k, alpha in enumerate(net.arch_parameters()):
        assert torch.isinf(alpha).any() and (alpha[torch.isfinite(alpha)] > -math.inf).all()
        finite = torch.isfinite(alpha)
        assert (finite.sum(1) >= 1).all()
        for row, op in zip(finite, genotype[k * n : (k + 1) * n]):
            assert row[space.ops.index(op)]  # the op the genotype names survives
        weights = net.mix(alpha)
        assert ((weights == 0) == ~finite).all()  # pruned ops weigh exactly 0
    assert net.genotype() == genotype
    out = net(x)
    assert torch.isfinite(out).all()
    # skipping the zero-weight ops changes nothing: the same pass with every op computed
    live_off = {r: (w, None) for r, (w, _) in net.edge_weights().items()}
    net.edge_weights = lambda: live_off
    assert torch.allclose(net(x), out, atol=1e-6)
    assert prune_ops(net, 0.2) == 0  # nothing left to prune


def test_pruning_by_hand_set_weights():
    space = CellSpace(nodes=1, ops=("none", "conv_3x3", "max_pool_3x3"), channels=4, cells=1)
    net = Supernet(space, 1, 3)
    with torch.no_grad():
        net.alpha.copy_(torch.log(torch.tensor([[0.6, 0.3, 0.1]])))  # 'none' strongest
    assert prune_ops(net, 0.35) == 1
    # max_pool goes; conv_3x3 stays though below the threshold: it is the edge's op
    assert torch.isinf(net.alpha[0, 2]) and torch.isfinite(net.alpha[0, :2]).all()
    assert torch.isfinite(net(_x(5, 8))).all()


# -- PC-DARTS: partial channels ---------------------------------------------------------------


def _unshuffle(out: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of a channel shuffle in k groups: the channels as they were concatenated."""
    return out.unflatten(1, (out.shape[1] // k, k)).transpose(1, 2).flatten(1, 2)


def _supernet(seed: int = 0, **space) -> Supernet:
    torch.manual_seed(seed)
    return Supernet(CellSpace(**space), 1, 3)


@pytest.mark.parametrize("reduction,input_cells", [(False, 1), (True, 1), (True, 2)])
def test_partial_channels_1_is_exactly_the_default_network(reduction, input_cells):
    space = dict(nodes=2, channels=8, cells=2, reduction=reduction, input_cells=input_cells)
    assert CellSpace(**space).partial_channels == 1 and CellSpace(**space, partial_channels=1) == CellSpace(
        **space
    )
    default, k1 = _supernet(**space), _supernet(**space, partial_channels=1)
    assert [(n, t.shape) for n, t in default.state_dict().items()] == [
        (n, t.shape) for n, t in k1.state_dict().items()
    ]
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), k1.state_dict().values()))
    x = _x(5, 12)
    assert torch.equal(default(x), k1(x))


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("reduction,input_cells", [(False, 1), (False, 2), (True, 1), (True, 2)])
def test_partial_channels_shapes(k, reduction, input_cells):
    c = 8
    space = dict(nodes=3, channels=c, cells=2, reduction=reduction, input_cells=input_cells)
    full, net = _supernet(**space), _supernet(**space, partial_channels=k)
    # the same space of genotypes, the same alphas; only the ops of the mixed edges shrink
    assert net.space.search_space.signature == full.space.search_space.signature
    assert [a.shape for a in net.arch_parameters()] == [a.shape for a in full.arch_parameters()]
    assert list(net.state_dict()) == list(full.state_dict())
    for name, t in net.state_dict().items():
        mixed = ".edges." in name and ".ops." in name
        if mixed and name.endswith("weight") and t.dim() == 4:  # a conv of an op: c/K channels
            assert t.shape[0] in (c // k, c // k - c // (2 * k), c // (2 * k)) and t.shape[1] in (c // k, 1)
        elif not mixed:
            assert t.shape == full.state_dict()[name].shape, name
    for cell in net.cells:
        for edge in cell.edges:
            assert edge.partial == k and edge.mixed_channels == c // k
            conv = edge.ops[ALL_OPS.index("conv_3x3")][1]
            assert conv.weight.shape == (c // k, c // k, 3, 3)
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in full.parameters())
    for size in (28, 8):
        shapes = []
        hooks = [
            cell.register_forward_hook(lambda m, i, o, shapes=shapes: shapes.append(tuple(o.shape)))
            for cell in net.cells
        ]
        out = net(_x(5, size))
        for h in hooks:
            h.remove()
        assert out.shape == (5, 3) and torch.isfinite(out).all()
        half = math.ceil(size / 2)
        # normal, reduction, normal; or normal, 2x2 max pool, normal
        assert shapes == [(5, c, size, size), (5, c, half, half), (5, c, half, half)][: len(net.cells)]
        if reduction:  # the stride-2 edges: every op and the bypass at ceil(n/2)
            edge = net.cells[1].edges[0]
            assert edge(torch.rand(2, c, size, size), net.mix(net.alpha_reduce)[0]).shape == (
                2,
                c,
                half,
                half,
            )


def test_partial_channels_gradients_reach_alpha_and_speed_changes_only_rounding():
    space = dict(nodes=2, channels=8, cells=2, reduction=True, input_cells=2, partial_channels=2)
    net = _supernet(**space)
    F.cross_entropy(net(_x(5, 8)), torch.arange(5) % 3).backward()
    assert net.alpha.grad.abs().sum() > 0 and net.alpha_reduce.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.weight_parameters())
    x = _x(6, 12)
    outs = []
    for speed in (Speed(channels_last=False, shared_relu=False), Speed()):
        torch.manual_seed(0)
        outs.append(Supernet(CellSpace(**space), 1, 3, speed)(x).detach())
    assert torch.allclose(outs[0], outs[1], atol=1e-5)


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("stride,size", [(1, 6), (2, 6), (2, 7)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_bypassed_channels_pass_unchanged_before_the_shuffle(k, stride, size, channels_last):
    from metanas.searchers.darts.cells import MixedOp

    c = 8
    torch.manual_seed(0)
    op = MixedOp(ALL_OPS, c, "group", shared_relu=channels_last, stride=stride, partial=k)
    x = torch.randn(3, c, size, size)
    if channels_last:
        op.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    weights = F.softmax(torch.randn(len(ALL_OPS)), 0)
    out = op(x, weights)
    half = math.ceil(size / stride)
    assert out.shape == (3, c, half, half)
    mixed, bypass = _unshuffle(out, k).split([c // k, c - c // k], dim=1)
    expect = x[:, c // k :] if stride == 1 else F.max_pool2d(x[:, c // k :], 2, 2, ceil_mode=True)
    assert torch.equal(bypass, expect)  # exactly, not only close
    assert torch.equal(mixed, op.mix(x[:, : c // k], weights))
    # the shuffle: channel j*K of the output is mixed channel j; group i > 0 lands at i, i+K, ...
    assert torch.equal(out[:, 0::k], mixed) and torch.equal(out[:, 1::k], bypass[:, : c // k])
    # every op skipped (pruned): the mixed part is zero, the bypass still passes
    out = op(x, weights, live=[False] * len(ALL_OPS))
    mixed, bypass = _unshuffle(out, k).split([c // k, c - c // k], dim=1)
    assert (mixed == 0).all() and torch.equal(bypass, expect)


def test_partial_channels_are_validated():
    from pydantic import ValidationError

    from metanas.cluster.schema import SpaceSettings

    for bad in (
        dict(channels=6, partial_channels=4),
        dict(channels=8, partial_channels=0),
        dict(channels=8, partial_channels=3),
        dict(channels=4, partial_channels=4, reduction=True),
    ):
        with pytest.raises(ValueError, match="partial_channels"):
            CellSpace(**bad)
    # c/K = 1 is fine without reduction
    assert CellSpace(channels=4, partial_channels=4).partial_channels == 4
    assert SpaceSettings(channels=8, partial_channels=4).cell_space().partial_channels == 4
    assert SpaceSettings().cell_space() == CellSpace()
    for bad in (dict(channels=6, partial_channels=4), dict(partial_channels=0)):
        with pytest.raises(ValidationError, match="partial_channels"):
            SpaceSettings(**bad)


def test_partial_channels_round_trip_and_leave_the_search_space_alone():
    space = CellSpace(nodes=3, channels=8, cells=3, reduction=True, input_cells=2, partial_channels=4)
    assert space.to_dict()["partial_channels"] == 4 and CellSpace(**space.to_dict()) == space
    plain = CellSpace(nodes=3, channels=8, cells=3, reduction=True, input_cells=2)
    assert space.search_space.signature == plain.search_space.signature
    # as without the option
    assert CellSpace(nodes=2, partial_channels=2).search_space.signature == "0cc2322666a6b492"


def test_a_derived_genotypes_network_is_the_same_with_and_without_partial_channels():
    space = dict(nodes=2, channels=8, cells=2, reduction=True, input_cells=2)
    net = _supernet(**space, partial_channels=4)
    F.cross_entropy(net(_x(5, 8)), torch.arange(5) % 3).backward()
    with torch.no_grad():
        for a in net.arch_parameters():
            a.sub_(a.grad)
    genotype = net.genotype()
    torch.manual_seed(1)
    plain = DiscreteNet(CellSpace(**space), genotype, 1, 3)
    torch.manual_seed(1)
    partial = DiscreteNet(CellSpace(**space, partial_channels=4), genotype, 1, 3)
    shapes = [[(n, t.shape) for n, t in net.state_dict().items()] for net in (plain, partial)]
    assert shapes[0] == shapes[1]
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), partial.state_dict().values()))
    x = _x(5, 12)
    assert torch.equal(plain(x), partial(x))


# -- PC-DARTS: edge normalisation --------------------------------------------------------------


def test_edge_normalization_off_adds_nothing():
    net = _supernet(nodes=2, channels=4, cells=2, reduction=True)
    assert not [n for n in net.state_dict() if n.startswith("beta")]
    assert net.betas() == [] and net.arch_parameters() == net.alphas() == [net.alpha, net.alpha_reduce]
    assert net.edge_scales() is None


@pytest.mark.parametrize("reduction,input_cells,k", [(False, 1, 1), (True, 2, 1), (True, 1, 2)])
def test_edge_normalization_betas_are_architecture_parameters(reduction, input_cells, k):
    space = CellSpace(
        nodes=3,
        channels=8,
        cells=2,
        reduction=reduction,
        input_cells=input_cells,
        edge_normalization=True,
        partial_channels=k,
    )
    assert CellSpace(**space.to_dict()) == space
    plain = CellSpace(nodes=3, reduction=reduction, input_cells=input_cells)
    assert space.search_space.signature == plain.search_space.signature
    torch.manual_seed(0)
    net = Supernet(space, 1, 3)
    betas = [net.beta, net.beta_reduce] if reduction else [net.beta]
    assert net.betas() == betas and net.arch_parameters() == net.alphas() + betas
    assert all(b.shape == (len(space.edges),) for b in betas)
    arch = {id(p) for p in net.arch_parameters()}
    assert {id(p) for n, p in net.named_parameters() if is_arch_param(n)} == arch
    assert not arch & {id(p) for p in net.weight_parameters()}
    # per node, the scales of its incoming edges are a softmax: positive, summing to 1
    with torch.no_grad():
        for b in betas:
            b.copy_(torch.randn_like(b))
    for scale in net.edge_scales().values():
        start = 0
        for i in range(space.nodes):
            n = space.input_cells + i
            assert (scale[start : start + n] > 0).all() and scale[
                start : start + n
            ].sum().item() == pytest.approx(1.0)
            start += n
    F.cross_entropy(net(_x(5, 8)), torch.arange(5) % 3).backward()
    assert all(b.grad.abs().sum() > 0 for b in betas) and net.alpha.grad.abs().sum() > 0
    # the genotype comes from the alphas alone
    genotype = net.genotype()
    with torch.no_grad():
        for b in betas:
            b.mul_(-3.0)
    assert net.genotype() == genotype


def test_edge_normalization_scales_each_edge():
    # one node with two inputs: its output is softmax(beta)-weighted, so beta changes it
    space = CellSpace(nodes=1, channels=4, cells=1, input_cells=2, edge_normalization=True)
    torch.manual_seed(0)
    net = Supernet(space, 1, 3)
    x = _x(5, 8)
    with torch.no_grad():
        net.beta.zero_()
    even = net(x)
    with torch.no_grad():
        net.beta.copy_(torch.tensor([5.0, -5.0]))
    assert not torch.allclose(net(x), even)
    # with equal betas each edge gets 1/2: the same as halving every edge's output
    torch.manual_seed(0)
    plain = Supernet(CellSpace(nodes=1, channels=4, cells=1, input_cells=2), 1, 3)
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if k != "beta"})
    for edge in plain.cells[0].edges:
        edge.register_forward_hook(lambda m, i, o: o * 0.5)  # the hook's result replaces the output
    assert torch.allclose(plain(x), even, atol=1e-6)


def test_edge_normalization_with_adapt_prune_reptile_and_settings():
    from metanas.cluster.schema import SpaceSettings

    space = SpaceSettings(
        nodes=2, channels=8, cells=2, reduction=True, edge_normalization=True, partial_channels=2
    )
    net = Supernet(space.cell_space(), 1, 3)
    before = [b.detach().clone() for b in net.betas()]
    x, y = _x(6, 8), torch.arange(6) % 3
    adapt(net, x, y, x, y, AdaptSettings(steps=2, lr_w=0.01, lr_alpha=0.01, prune_threshold=0.2))
    assert all(not torch.equal(a, b) for a, b in zip(before, net.betas()))  # the betas adapt with alpha
    assert all(torch.isfinite(b).all() for b in net.betas())  # pruning touches op weights only
    assert all(torch.isinf(a).any() for a in net.alphas())
    assert torch.isfinite(net(x)).all()
    theta = {"w": torch.zeros(1), "beta": torch.zeros(1), "beta_reduce": torch.zeros(1)}
    new = reptile_step(theta, [{k: torch.ones(1) for k in theta}], beta_w=1.0, beta_alpha=0.25)
    assert new["w"].item() == 1.0 and new["beta"].item() == 0.25 and new["beta_reduce"].item() == 0.25


def test_bench_step_times_partial_channels_beside_full_channels():
    from metanas.bench.step import bench_step

    r = bench_step(image_size=8, batch=4, channels=4, cells=1, nodes=1, rounds=1, steps=1, partial_channels=2)
    assert set(r["step_ms"]) == {"before", "channels_last", "after", "full_channels"}
    assert r["partial_channels"] == 2 and r["partial_speedup"] > 0 and r["speedup"] > 0
