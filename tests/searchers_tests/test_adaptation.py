from __future__ import annotations

import pytest
import torch

from metanas.searchers.darts.adaptation import (
    AdaptSettings,
    ModelSpec,
    NonFiniteLoss,
    adapt,
    evaluate,
    get_params,
    init_head_from_prototypes,
)
from metanas.searchers.darts.cell_space import CellSpace
from metanas.searchers.episodes import digits_pools


def _episode_tensors():
    train, _ = digits_pools([7, 8, 9], [0, 90], split="digit")
    ep = train.sample_episode(5, 5, 10, seed=1)
    return [torch.as_tensor(a) for a in (ep.support_x, ep.support_y, ep.query_x, ep.query_y)]


def test_one_inner_loop_lowers_the_query_loss_and_moves_w_and_alpha():
    torch.manual_seed(0)
    sx, sy, qx, qy = _episode_tensors()
    # from a random initialisation (no prototype head), so there is a loss to lower
    net = ModelSpec(CellSpace(nodes=2, channels=8, cells=1), 1, 5).build(seed=0)
    before_params = get_params(net)
    _, loss_before = evaluate(net, qx, qy)
    adapt(net, sx, sy, qx, qy, AdaptSettings(steps=15, lr_w=0.01, lr_alpha=0.01))
    _, loss_after = evaluate(net, qx, qy)
    after = get_params(net)
    assert loss_after < loss_before
    assert not torch.equal(before_params["alpha"], after["alpha"])
    assert not torch.equal(before_params["stem.0.weight"], after["stem.0.weight"])


def test_prototype_head_classifies_the_support_set_it_was_built_from():
    sx, sy, _, _ = _episode_tensors()
    net = ModelSpec(CellSpace(nodes=1, channels=4, cells=1), 1, 5).build(seed=0)
    init_head_from_prototypes(net, sx, sy)
    assert evaluate(net, sx, sy)[0] >= 0.8  # 5 shots per class: prototypes separate them


def test_alpha_is_frozen_when_alpha_updates_are_off():
    sx, sy, qx, qy = _episode_tensors()
    net = ModelSpec(CellSpace(nodes=1, channels=4, cells=1), 1, 5).build(seed=0)
    alpha = net.alpha.detach().clone()
    adapt(net, sx, sy, qx, qy, AdaptSettings(steps=3, lr_w=0.01, lr_alpha=0.01, update_alpha=False))
    assert torch.equal(alpha, net.alpha.detach())


def test_a_nan_loss_fails_the_task():
    sx, sy, qx, qy = _episode_tensors()
    net = ModelSpec(CellSpace(nodes=1, channels=4, cells=1), 1, 5).build(seed=0)
    sx = sx.clone()
    sx[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLoss):
        adapt(net, sx, sy, qx, qy, AdaptSettings(steps=2, lr_w=0.01, lr_alpha=0.01))


def test_images_come_in_any_layout_the_learner_can_tell_apart():
    import numpy as np
    import torch

    from metanas._util.threads import torch_threads
    from metanas.searchers.darts.learner import prepare_images

    rgb = np.random.default_rng(0).random((5, 3, 8, 8)).astype(np.float32)
    first = prepare_images(rgb, (8, 8))
    last = prepare_images(rgb.transpose(0, 2, 3, 1), (8, 8))  # (N, 8, 8, 3), as PIL and NumPy hold it
    assert first.shape == last.shape == (5, 1, 8, 8) and torch.allclose(first, last)
    assert torch.allclose(prepare_images(rgb[:, :1], (8, 8)), prepare_images(rgb[:, 0], (8, 8)))
    with pytest.raises(ValueError, match="shape"):
        prepare_images(rgb[0, 0, 0], (8, 8))
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
