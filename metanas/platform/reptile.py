"""Reptile meta-update over the supernet's weights `w` and architecture parameters `alpha`.

theta <- theta + beta * mean_i(theta_i - theta), with separate step sizes for `w` and
`alpha`, both decayed linearly over the campaign, and `alpha` frozen during its warm-up
(as in MetaNAS, the weights of all ops learn first so no op wins just by training faster).
Pure torch, no Ray: the MetaLearner actor wraps this class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class MetaSchedule:
    iterations: int
    beta_w: float
    beta_alpha: float
    beta_final_fraction: float = 0.0
    alpha_warmup: int = 0

    def betas(self, iteration: int) -> tuple[float, float]:
        frac = min(iteration / max(self.iterations, 1), 1.0)
        scale = 1.0 - frac * (1.0 - self.beta_final_fraction)
        beta_alpha = 0.0 if iteration < self.alpha_warmup else self.beta_alpha * scale
        return self.beta_w * scale, beta_alpha

    def alpha_active(self, iteration: int) -> bool:
        return iteration >= self.alpha_warmup


def reptile_step(theta: Params, deltas: Sequence[Params], beta_w: float, beta_alpha: float) -> Params:
    """Return the new meta-parameters; `theta` is not modified."""
    if not deltas:
        return {k: v.clone() for k, v in theta.items()}
    out = {}
    for name, value in theta.items():
        mean = torch.stack([d[name].to(value.dtype) for d in deltas]).mean(0)
        beta = beta_alpha if name == "alpha" else beta_w
        out[name] = value + beta * mean
    return out
