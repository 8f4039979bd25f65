from __future__ import annotations

import pytest
import torch

from metanas.platform.reptile import MetaSchedule, reptile_step


def test_reptile_step_on_a_known_case():
    theta = {"w": torch.tensor([1.0, 2.0]), "alpha": torch.tensor([[0.0, 0.0]])}
    deltas = [
        {"w": torch.tensor([1.0, 0.0]), "alpha": torch.tensor([[2.0, -2.0]])},
        {"w": torch.tensor([3.0, -2.0]), "alpha": torch.tensor([[0.0, 0.0]])},
    ]
    new = reptile_step(theta, deltas, beta_w=0.5, beta_alpha=0.25)
    # w: 1 + 0.5*mean(1,3) = 2 ; 2 + 0.5*mean(0,-2) = 1.5 ; alpha: 0.25*mean(2,0) = 0.25
    assert torch.allclose(new["w"], torch.tensor([2.0, 1.5]))
    assert torch.allclose(new["alpha"], torch.tensor([[0.25, -0.25]]))
    assert torch.equal(theta["w"], torch.tensor([1.0, 2.0]))  # input untouched
    assert torch.equal(reptile_step(theta, [], 1.0, 1.0)["w"], theta["w"])


def test_schedule_decays_and_freezes_alpha_during_warmup():
    s = MetaSchedule(iterations=10, beta_w=1.0, beta_alpha=0.5, beta_final_fraction=0.0, alpha_warmup=4)
    assert s.betas(0) == (1.0, 0.0) and not s.alpha_active(3) and s.alpha_active(4)
    bw, ba = s.betas(5)
    assert bw == pytest.approx(0.5) and ba == pytest.approx(0.25)
