"""What a worker does with one task, free of Ray: the TaskWorker actor wraps this class.

Meta-training task: load the meta-parameters, adapt on a meta-train episode, return the
update (adapted - initial) and a few numbers. Meta-test task: one held-out episode scored by
every method through the learner API. Episodes are derived from (campaign seed, phase,
iteration, slot), so a retried task sees exactly the same data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metanas.platform.adaptation import (
    AdaptSettings,
    ModelSpec,
    Params,
    adapt,
    evaluate,
    get_params,
    init_head_from_prototypes,
    set_params,
)
from metanas.platform.config import Campaign
from metanas.platform.learner import Learner, adapt_settings
from metanas.platform.tasks import ClassPool, Episode, digits_pools, folder_pools

META_TRAIN, META_TEST = 0, 1
LEARNERS = ("metanas", "reptile_fixed")


def build_pools(campaign: Campaign) -> tuple[ClassPool, ClassPool]:
    d = campaign.data
    if d.source == "digits":
        return digits_pools(d.test_digits, d.rotations, d.split, d.test_classes, campaign.seed)
    return folder_pools(d.paths, d.image_size, d.test_fraction, d.rotations, campaign.seed, d.invert)


@dataclass(frozen=True)
class TrainOutcome:
    learner: str
    iteration: int
    slot: int
    query_accuracy: float  # prototype head on the meta-parameters' features, before adaptation
    query_accuracy_after: float  # after adaptation (optimistic when the w steps saw the query)
    seconds: float  # time inside the inner loop
    genotype: tuple[str, ...] | None = None  # the supernet's derived architecture after adaptation
    embedding: list[float] | None = None  # support-set features under the meta-parameters


def pixel_prototype_accuracy(ep: Episode) -> float:
    """Nearest class mean on raw pixels: the no-learning floor."""
    n_way = int(ep.support_y.max()) + 1
    s = ep.support_x.reshape(len(ep.support_x), -1)
    q = ep.query_x.reshape(len(ep.query_x), -1)
    protos = np.stack([s[ep.support_y == k].mean(0) for k in range(n_way)])
    dist = ((q[:, None, :] - protos[None]) ** 2).sum(-1)
    return float((dist.argmin(1) == ep.query_y).mean())


@torch.no_grad()
def support_embedding(net: torch.nn.Module, support_x: torch.Tensor) -> list[float]:
    """The task's embedding for the memory: mean and spread of its support-set features."""
    feats = net.features(support_x)
    return torch.cat([feats.mean(0), feats.std(0, unbiased=False)]).cpu().tolist()


class TaskRunner:
    """Holds the task pools and one network per learner, reused across tasks."""

    def __init__(self, campaign: Campaign, device: str | torch.device = "cpu") -> None:
        self.campaign = campaign
        self.device = torch.device(device)
        self.train_pool, self.test_pool = build_pools(campaign)
        self.space = campaign.space.cell_space()
        n_way = campaign.episodes.n_way
        self.specs = {
            "metanas": ModelSpec(self.space, 1, n_way),
            "reptile_fixed": ModelSpec(self.space, 1, n_way, campaign.fixed_genotype()),
        }
        self._nets: dict[str, torch.nn.Module] = {}

    @property
    def image_size(self) -> tuple[int, int]:
        return self.train_pool.image_shape

    def train_episode(self, iteration: int, slot: int) -> Episode:
        e = self.campaign.episodes
        return self.train_pool.sample_episode(e.n_way, e.train_shots, e.train_query, [self.campaign.seed, META_TRAIN, iteration, slot])

    def test_episode(self, index: int) -> Episode:
        e = self.campaign.episodes
        return self.test_pool.sample_episode(e.n_way, e.k_shot, e.query, [self.campaign.seed, META_TEST, index])

    def _net(self, learner: str) -> torch.nn.Module:
        if learner not in self._nets:
            self._nets[learner] = self.specs[learner].build(seed=0).to(self.device)
        return self._nets[learner]

    def meta_train_task(
        self, learner: str, theta: Params, iteration: int, slot: int, update_alpha: bool
    ) -> tuple[Params, TrainOutcome]:
        """Adapt on one meta-train episode; return (theta_task - theta, outcome).
        Raises NonFiniteLoss if the loss diverges: that task then fails."""
        ep = self.train_episode(iteration, slot)
        sx, sy, qx, qy = (torch.as_tensor(a, device=self.device) for a in (ep.support_x, ep.support_y, ep.query_x, ep.query_y))
        net = self._net(learner)
        start = time.perf_counter()
        set_params(net, {k: v.to(self.device) for k, v in theta.items()})
        init_head_from_prototypes(net, sx, sy)
        before = evaluate(net, qx, qy)[0]
        embedding = support_embedding(net, sx) if learner == "metanas" else None
        mt = self.campaign.meta_train
        settings = AdaptSettings(mt.inner.steps, mt.inner.lr_w, mt.inner.lr_alpha, mt.inner.batch_size, update_alpha)
        wx, wy = (torch.cat([sx, qx]), torch.cat([sy, qy])) if mt.w_sees_query else (sx, sy)
        adapt(net, wx, wy, qx, qy, settings, seed=iteration * 1009 + slot)
        after = evaluate(net, qx, qy)[0]
        new = get_params(net)
        delta = {k: new[k] - theta[k].cpu() for k in theta}
        genotype = net.genotype() if learner == "metanas" else None
        outcome = TrainOutcome(learner, iteration, slot, before, after, time.perf_counter() - start, genotype, embedding)
        return delta, outcome

    def meta_test_task(self, index: int, params: dict[str, Params]) -> dict[str, Any]:
        """Score one held-out episode with every method, same adaptation budget for all."""
        ep = self.test_episode(index)
        settings = adapt_settings(self.campaign.meta_test.adapt)
        size = self.image_size
        seed = self.campaign.seed * 100003 + index
        meta = Learner(self.space, params["metanas"], settings, size, device=self.device).adapt(ep.support_x, ep.support_y, seed)
        acc = {"metanas": float((meta.predict(ep.query_x) == ep.query_y).mean())}
        baselines = self.campaign.meta_test.baselines
        if "reptile_fixed" in baselines:
            fixed = Learner(self.space, params["reptile_fixed"], settings, size, self.campaign.fixed_genotype(), self.device)
            acc["reptile_fixed"] = float((fixed.adapt(ep.support_x, ep.support_y, seed).predict(ep.query_x) == ep.query_y).mean())
        if "scratch" in baselines:
            scratch = Learner(self.space, None, settings, size, meta.genotype, self.device)
            acc["scratch"] = float((scratch.adapt(ep.support_x, ep.support_y, seed).predict(ep.query_x) == ep.query_y).mean())
        if "pixel_prototypes" in baselines:
            acc["pixel_prototypes"] = pixel_prototype_accuracy(ep)
        return {"index": index, "accuracy": acc, "genotype": list(meta.genotype)}
