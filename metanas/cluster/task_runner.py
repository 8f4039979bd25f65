"""What a worker does with one task, free of Ray: the TaskWorker actor wraps this class.

Meta-training task: load the meta-parameters, adapt on a meta-train episode, return the
update (adapted - initial), a few numbers and, for the supernet, the task's memory record.
Meta-test task: one held-out episode scored by every method through the learner API.
Episodes are derived from (campaign seed, phase, iteration, slot), so a retried task sees
exactly the same data.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from metanas.cluster.messages import TestResult, TestTask, TrainResult, TrainTask
from metanas.cluster.schema import Campaign
from metanas.memory.embedders import support_embedder_name, support_embedding
from metanas.memory.records import TaskRecord
from metanas.searchers.darts.adaptation import Params, adapt, evaluate, get_params, init_head_from_prototypes, set_params
from metanas.searchers.darts.learner import Learner
from metanas.searchers.episodes import ClassPool, Episode, digits_pools, folder_pools, pixel_prototype_accuracy

META_TRAIN, META_TEST = 0, 1


def build_pools(campaign: Campaign) -> tuple[ClassPool, ClassPool]:
    d = campaign.data
    if d.source == "digits":
        return digits_pools(d.test_digits, d.rotations, d.split, d.test_classes, campaign.seed)
    return folder_pools(d.paths, d.image_size, d.test_fraction, d.rotations, campaign.seed, d.invert)


class TaskRunner:
    """Holds the task pools and one network per learner, reused across tasks."""

    def __init__(self, campaign: Campaign, device: str | torch.device = "cpu") -> None:
        self.campaign = campaign
        self.device = torch.device(device)
        self.train_pool, self.test_pool = build_pools(campaign)
        self.space = campaign.space.cell_space()
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
            self._nets[learner] = self.campaign.model_spec(learner).build(seed=0).to(self.device)
        return self._nets[learner]

    def meta_train_task(self, task: TrainTask, theta: Params) -> tuple[Params, TrainResult]:
        """Adapt on one meta-train episode; return (theta_task - theta, result).
        Raises NonFiniteLoss if the loss diverges: that task then fails."""
        ep = self.train_episode(task.iteration, task.slot)
        sx, sy, qx, qy = (torch.as_tensor(a, device=self.device) for a in (ep.support_x, ep.support_y, ep.query_x, ep.query_y))
        net = self._net(task.learner)
        start = time.perf_counter()
        set_params(net, {k: v.to(self.device) for k, v in theta.items()})
        init_head_from_prototypes(net, sx, sy)
        before = evaluate(net, qx, qy)[0]
        embedding = support_embedding(net, sx) if task.learner == "metanas" else None
        mt = self.campaign.meta_train
        wx, wy = (torch.cat([sx, qx]), torch.cat([sy, qy])) if mt.w_sees_query else (sx, sy)
        adapt(net, wx, wy, qx, qy, mt.inner.settings(task.update_alpha), seed=task.iteration * 1009 + task.slot)
        after = evaluate(net, qx, qy)[0]
        new = get_params(net)
        delta = {k: new[k] - theta[k].cpu() for k in theta}
        record = self._task_record(task, net.genotype(), after, embedding) if embedding is not None else None
        return delta, TrainResult(task, before, after, time.perf_counter() - start, record=record)

    def _task_record(self, task: TrainTask, genotype: tuple[str, ...], score: float, embedding: Any) -> TaskRecord:
        """The memory's record of one supernet task search: its derived genotype and score."""
        c = self.campaign
        key = f"{c.name}-seed{c.seed}/meta_train/{task.iteration}/{task.slot}"
        config = self.space.genotype_to_config(genotype)
        return TaskRecord(
            key=key,
            task_id=key,
            family=c.data.source,
            embedder=support_embedder_name(self.space),
            embedding=embedding,
            space_signature=self.space.search_space.signature,
            best_config=config,
            best_score=score,
            trials=[{"config": config, "score": score, "budget": float(c.meta_train.inner.steps)}],
            searcher="darts",
            campaign_id=c.name,
            created_at=time.time(),
        )

    def meta_test_task(self, task: TestTask, params: dict[str, Params]) -> TestResult:
        """Score one held-out episode with every method, same adaptation budget for all."""
        ep = self.test_episode(task.index)
        settings = self.campaign.meta_test.adapt.settings()
        size = self.image_size
        seed = self.campaign.seed * 100003 + task.index

        def accuracy(learner: Learner) -> tuple[float, Any]:
            model = learner.adapt(ep.support_x, ep.support_y, seed)
            return float((model.predict(ep.query_x) == ep.query_y).mean()), model

        meta_accuracy, meta = accuracy(Learner(self.space, params["metanas"], settings, size, device=self.device))
        acc = {"metanas": meta_accuracy}
        baselines = self.campaign.meta_test.baselines
        if "reptile_fixed" in baselines:
            fixed = Learner(self.space, params["reptile_fixed"], settings, size, self.campaign.fixed_genotype(), self.device)
            acc["reptile_fixed"] = accuracy(fixed)[0]
        if "scratch" in baselines:
            acc["scratch"] = accuracy(Learner(self.space, None, settings, size, meta.genotype, self.device))[0]
        if "pixel_prototypes" in baselines:
            acc["pixel_prototypes"] = pixel_prototype_accuracy(ep)
        return TestResult(task.index, acc, tuple(meta.genotype))

