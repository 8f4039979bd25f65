"""The inner loop: first-order DARTS on one few-shot task.

`adapt` alternates an `alpha` step (architecture) and a `w` step (weights), each with its own
Adam optimiser, as in first-order DARTS. In meta-training the `w` steps see the support set
and the `alpha` steps the query set (DARTS' train/val split); at test time there are only
support labels, so both see the support set. The caller owns the model; `adapt` changes its
parameters in place and never touches the meta-parameters it was loaded from.

As in MetaNAS' meta-test, the architecture may adapt only during the first steps
(`alpha_fraction`), and the ops left with little weight may be pruned afterwards
(`prune_threshold`). Drop path (the space's `drop_path`) is on while `adapt` runs and off
for `evaluate`, the prototype head and prediction. A campaign's hardware limits
(`AdaptSettings.limits`, see `cost`) add their penalty to the architecture's loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metanas.searchers.darts.cell_space import CellSpace, Genotype
from metanas.searchers.darts.conv4 import Conv4
from metanas.searchers.darts.cost import CostLimit, cost_penalty
from metanas.searchers.darts.supernet import DiscreteNet, Supernet

Params = dict[str, torch.Tensor]


class NonFiniteLoss(RuntimeError):
    """A task's loss became NaN/inf; the task fails and its update is never applied."""


@dataclass(frozen=True)
class AdaptSettings:
    steps: int
    lr_w: float
    lr_alpha: float
    batch_size: int = 0  # 0 = full batch
    update_alpha: bool = True
    alpha_fraction: float = 1.0  # the architecture adapts during the first ceil(fraction * steps) steps
    # > 0: after adapting, ops whose edge weight is below it get weight exactly 0. Meta-test
    # only: a pruned (-inf) architecture parameter must never enter a Reptile update.
    prune_threshold: float = 0.0
    # Hardware limits (ProxylessNAS, FBNet): each adds its hinge on the expected cost under
    # the edge weights to the architecture's loss. Discrete networks have no such loss.
    limits: tuple[CostLimit, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha_fraction <= 1.0:
            raise ValueError(f"alpha_fraction: expected 0 <= x <= 1, got {self.alpha_fraction}")
        if not 0.0 <= self.prune_threshold < 1.0:
            raise ValueError(f"prune_threshold: expected 0 <= x < 1, got {self.prune_threshold}")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a network: the cell space, input and output sizes."""

    space: CellSpace
    in_channels: int
    n_way: int
    genotype: Genotype | None = None  # None: the supernet
    conv4_channels: int = 0  # > 0: the classic Conv-4 network (only `space.norm` applies)
    temperature: float = 1.0  # the supernet's softmax temperature

    def build(self, seed: int | None = None) -> nn.Module:
        if seed is not None:
            torch.manual_seed(seed)
        if self.conv4_channels > 0:
            return Conv4(self.in_channels, self.n_way, self.conv4_channels, self.space.norm)
        if self.genotype is None:
            net = Supernet(self.space, self.in_channels, self.n_way)
            net.temperature = self.temperature
            return net
        return DiscreteNet(self.space, self.genotype, self.in_channels, self.n_way)


def is_meta_param(name: str) -> bool:
    """The linear head is rebuilt for every task from prototypes, so it is not meta-learned
    (and a learner can adapt to any number of classes)."""
    return not name.startswith("classifier.")


def get_params(model: nn.Module) -> Params:
    """A detached CPU copy of the meta-parameters (everything but the head)."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if is_meta_param(n)}


def set_params(model: nn.Module, params: Params) -> None:
    with torch.no_grad():
        for n, p in model.named_parameters():
            if is_meta_param(n):
                p.copy_(params[n])


def _batches(n: int, batch_size: int, rng: np.random.Generator):
    while True:
        if batch_size <= 0 or batch_size >= n:
            yield slice(None)
        else:
            yield torch.from_numpy(rng.choice(n, size=batch_size, replace=False))


def arch_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The architecture parameters of a supernet; none for a discrete network."""
    return model.arch_parameters() if hasattr(model, "arch_parameters") else []


def set_drop_path(model: nn.Module, on: bool) -> None:
    """Drop path follows this flag, not train mode: the networks normalise with per-sample
    statistics, so they run in train mode at test time too."""
    if hasattr(model, "drop_path_active"):
        model.drop_path_active = on


def _check(loss: torch.Tensor) -> torch.Tensor:
    if not math.isfinite(loss.item()):
        raise NonFiniteLoss(f"loss became {loss.item()} during adaptation")
    return loss


def adapt(
    model: nn.Module,
    w_x: torch.Tensor,
    w_y: torch.Tensor,
    alpha_x: torch.Tensor,
    alpha_y: torch.Tensor,
    settings: AdaptSettings,
    seed: int = 0,
) -> float:
    """Run `settings.steps` alternating steps; return the last `w` loss."""
    model.train()
    set_drop_path(model, True)
    try:
        loss = _steps(model, w_x, w_y, alpha_x, alpha_y, settings, seed)
    finally:
        set_drop_path(model, False)
    if settings.prune_threshold > 0.0 and arch_parameters(model):
        prune_ops(model, settings.prune_threshold)
    return loss


def _steps(model, w_x, w_y, alpha_x, alpha_y, settings: AdaptSettings, seed: int) -> float:
    w_params = model.weight_parameters()
    w_opt = torch.optim.Adam(w_params, lr=settings.lr_w, betas=(0.0, 0.999))
    arch = arch_parameters(model) if settings.update_alpha else []
    a_opt = torch.optim.Adam(arch, lr=settings.lr_alpha, betas=(0.5, 0.999)) if arch else None
    alpha_steps = math.ceil(settings.alpha_fraction * settings.steps) if arch else 0
    rng = np.random.default_rng(seed)
    w_batches = _batches(len(w_y), settings.batch_size, rng)
    a_batches = _batches(len(alpha_y), settings.batch_size, rng)
    # When alpha and w learn from the same data (test time: only support labels exist), the
    # alternating pair of steps shares one forward/backward pass: half the cost, and the
    # same first-order gradients, only evaluated at one point instead of two.
    joint = a_opt is not None and alpha_x is w_x and alpha_y is w_y
    loss = torch.tensor(float("nan"))
    for step in range(settings.steps):
        alpha_now = step < alpha_steps
        if alpha_now and not joint:
            idx = next(a_batches)
            a_opt.zero_grad(set_to_none=True)
            a_loss = _check(F.cross_entropy(model(alpha_x[idx]), alpha_y[idx]))
            # w's gradients from this pass are not kept
            (a_loss + cost_penalty(model, settings.limits)).backward(inputs=arch)
            a_opt.step()
        step_params = w_params + arch if alpha_now and joint else w_params
        optimizers = [w_opt, a_opt] if alpha_now and joint else [w_opt]
        idx = next(w_batches)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss = _check(F.cross_entropy(model(w_x[idx]), w_y[idx]))
        # (it depends on alpha only)
        penalty = cost_penalty(model, settings.limits) if alpha_now and joint else 0.0
        (loss + penalty).backward(inputs=step_params)
        for opt in optimizers:
            opt.step()
    return float(loss.item())


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, loss) on one batch, normalised with its own batch statistics."""
    set_drop_path(model, False)
    logits = model(x)
    return float((logits.argmax(1) == y).float().mean()), float(F.cross_entropy(logits, y))


def to_tensor(array: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.as_tensor(array, device=device)


@torch.no_grad()
def init_head_from_prototypes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """Set the linear head to the nearest-prototype classifier on the current features
    (Proto-MAML, Triantafillou et al. 2020): logit_k = 2 c_k.f - |c_k|^2, so adaptation
    starts where a prototypical network would end, and label order carries no meaning."""
    model.train()
    set_drop_path(model, False)
    feats = model.features(x)
    n_way = model.classifier.out_features
    protos = torch.stack([feats[y == k].mean(0) for k in range(n_way)])
    model.classifier.weight.copy_(2.0 * protos)
    model.classifier.bias.copy_(-(protos**2).sum(1))


@torch.no_grad()
def prune_ops(model: Supernet, threshold: float) -> int:
    """Switch off, on every edge, the ops whose weight is below `threshold`: their
    architecture parameter becomes -inf, so their weight is exactly 0 and the mixed edge
    skips them. The op the genotype names for the edge (its strongest besides 'none')
    always stays. Returns how many ops were switched off."""
    space, pruned = model.space, 0
    kept = model.genotype()
    for k, alpha in enumerate(model.alphas()):  # op weights only (not edge normalisation's)
        off = model.mix(alpha) < threshold
        names = kept[k * len(space.edges) : (k + 1) * len(space.edges)]
        cols = torch.tensor([space.ops.index(n) for n in names], device=off.device)
        off[torch.arange(len(names), device=off.device), cols] = False
        pruned += int((off & torch.isfinite(alpha)).sum())
        alpha[off] = float("-inf")
    return pruned
