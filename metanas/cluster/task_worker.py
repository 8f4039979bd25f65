"""What a worker does with one task, free of Ray: the TaskWorker actor wraps this class.

Meta-training task: load the meta-parameters, adapt on a meta-train episode, return the
update (adapted - initial), a few numbers and, for the supernet, the task's memory record.
Meta-test task: one held-out episode scored by every method through the learner API.
Validation task: one fixed episode from the validation classes, scored by one learner at
one checkpoint (the learning curves).
Episodes are derived from (campaign seed, phase, iteration, slot), so a retried task sees
exactly the same data.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from metanas.cluster.messages import (
    TestResult,
    TestTask,
    TrainResult,
    TrainTask,
    ValidationResult,
    ValidationTask,
)
from metanas.cluster.schema import Campaign
from metanas.cluster.wire import Packed, difference
from metanas.memory.embedders import support_embedder_name, support_embedding
from metanas.memory.records import TaskRecord
from metanas.searchers.darts.adaptation import (
    Params,
    adapt,
    evaluate,
    init_head_from_prototypes,
    set_params,
)
from metanas.searchers.darts.cost import CostLimit, constrained_genotype
from metanas.searchers.darts.learner import Learner
from metanas.searchers.episodes import (
    ClassPool,
    Episode,
    digits_pools,
    folder_pools,
    hold_out_classes,
    pixel_prototype_accuracy,
)

META_TRAIN, META_TEST, VALIDATION = 0, 1, 2


def zero_cost_task(task: TrainTask, theta: Packed) -> tuple[Packed, TrainResult]:
    """What a task that costs nothing returns (benchmarks: the most a worker could send):
    a small constant update laid out as `theta`, through a real task's messages."""
    return Packed(theta.names, theta.shapes, np.full_like(theta.flat, 1e-6)), TrainResult(task, 0.0, 0.0, 0.0)


def build_pools(campaign: Campaign, decode: bool = True) -> tuple[ClassPool, ClassPool, ClassPool | None]:
    """(meta-train, meta-test, validation or None) class pools, pairwise disjoint.
    `decode=False`: folders' images are 1x1 placeholders (names and counts only)."""
    d = campaign.data
    if d.source == "digits":
        train, test = digits_pools(d.test_digits, d.rotations, d.split, d.test_classes, campaign.seed)
    else:
        train, test = folder_pools(
            d.paths, d.image_size, d.test_fraction, d.rotations, campaign.seed, d.invert, decode
        )
    v = campaign.meta_train.validation
    if v is None:
        return train, test, None
    train, validation = hold_out_classes(train, v.fraction, campaign.seed)
    return train, test, validation


class TaskWorkerCore:
    """Holds the task pools and one network per learner, reused across tasks."""

    def __init__(
        self, campaign: Campaign, device: str | torch.device = "cpu", limits: tuple[CostLimit, ...] = ()
    ) -> None:
        """`limits`: the campaign's hardware limits (`metanas.cluster.hardware`): the
        supernet's architecture steps carry their penalty, and its genotypes respect them."""
        # A worker's first torch optimizer imports torch._dynamo (about 1 s): pay it now,
        # with the process start, not in the campaign's first task.
        import torch._dynamo  # noqa: F401

        self.campaign = campaign
        self.limits = limits
        self.device = torch.device(device)
        self.train_pool, self.test_pool, self.validation_pool = build_pools(campaign)
        self.space = campaign.space.cell_space()
        self.evaluations = campaign.evaluations()
        self.schedule = campaign.meta_schedule()
        self._nets: dict[tuple, torch.nn.Module] = {}
        self._theta: Packed | None = None  # the parameters of the last task and their views
        self._theta_views: Params = {}

    @property
    def image_size(self) -> tuple[int, int]:
        return self.train_pool.image_shape

    def train_episode(self, iteration: int, slot: int) -> Episode:
        e = self.campaign.episodes
        return self.train_pool.sample_episode(
            e.n_way, e.train_shots, e.train_query, [self.campaign.seed, META_TRAIN, iteration, slot]
        )

    def test_episode(self, index: int, evaluation: int = 0) -> Episode:
        ev = self.evaluations[evaluation]
        # (the first evaluation keeps the seeds campaigns had before there were several)
        seed = [self.campaign.seed, META_TEST, index] + ([evaluation] if evaluation else [])
        return self.test_pool.sample_episode(ev.n_way, ev.k_shot, ev.query, seed)

    def validation_episode(self, index: int) -> Episode:
        v = self.campaign.meta_train.validation
        return self.validation_pool.sample_episode(
            v.n_way, v.k_shot, v.query, [self.campaign.seed, VALIDATION, index]
        )

    def _net(self, learner: str, derived: tuple[str, ...] | None) -> torch.nn.Module:
        key = (learner, derived)
        if key not in self._nets:
            self._nets[key] = self.campaign.model_spec(learner, derived).build(seed=0).to(self.device)
        return self._nets[key]

    def learner(self, name: str, params: Params | None, derived: tuple[str, ...] | None = None) -> Learner:
        """The meta-trained method `name` as a user gets it from `metanas.load`."""
        spec = self.campaign.model_spec(name, derived)
        settings = replace(self.campaign.meta_test.adapt.settings(), limits=self.limits)
        return Learner.from_spec(spec, params, settings, self.image_size, self.device)

    def meta_train_task(self, task: TrainTask, theta: Packed) -> tuple[Packed, TrainResult]:
        """Adapt on one meta-train episode; return (theta_task - theta, laid out as `theta`,
        and the result). Raises NonFiniteLoss if the loss diverges: that task then fails."""
        ep = self.train_episode(task.iteration, task.slot)
        sx, sy, qx, qy = (
            torch.as_tensor(a, device=self.device)
            for a in (ep.support_x, ep.support_y, ep.query_x, ep.query_y)
        )
        net = self._net(task.learner, task.derived)
        if hasattr(net, "temperature"):  # the supernet's, annealed over meta-training
            net.temperature = self.schedule.temperature(task.iteration)
        params = self._views(theta)
        start = time.perf_counter()
        set_params(net, params)
        init_head_from_prototypes(net, sx, sy)
        before = evaluate(net, qx, qy)[0]
        embedding = support_embedding(net, sx) if task.learner == "metanas" else None
        mt = self.campaign.meta_train
        wx, wy = (torch.cat([sx, qx]), torch.cat([sy, qy])) if mt.w_sees_query else (sx, sy)
        settings = replace(mt.inner.settings(task.update_alpha), limits=self.limits)
        adapt(net, wx, wy, qx, qy, settings, seed=task.iteration * 1009 + task.slot)
        after = evaluate(net, qx, qy)[0]
        delta = difference(dict(net.named_parameters()), theta)
        record = None
        if embedding is not None:
            record = self._task_record(
                task, constrained_genotype(self.space, net.alphas(), self.limits), after, embedding
            )
        return delta, TrainResult(task, before, after, time.perf_counter() - start, record=record)

    def _views(self, theta: Packed) -> Params:
        """`theta`'s named tensors, made once for all the tasks of a call (they share it)."""
        if self._theta is not theta:
            self._theta, self._theta_views = theta, theta.views()
        return self._theta_views

    def _task_record(
        self, task: TrainTask, genotype: tuple[str, ...], score: float, embedding: Any
    ) -> TaskRecord:
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
            space=self.space.search_space.to_spec(),
        )

    def meta_test_task(self, task: TestTask, params: dict[str, Params]) -> TestResult:
        """Score one held-out episode with every method, same adaptation budget for all.
        `params`: each meta-trained learner's meta-parameters."""
        ep = self.test_episode(task.index, task.evaluation)
        seed = self.campaign.seed * 100003 + task.index

        def accuracy(learner: Learner) -> tuple[float, Any]:
            model = learner.adapt(ep.support_x, ep.support_y, seed)
            return float((model.predict(ep.query_x) == ep.query_y).mean()), model

        meta_accuracy, meta = accuracy(self.learner("metanas", params["metanas"]))
        acc = {"metanas": meta_accuracy}
        for name in params:
            if name != "metanas":
                acc[name] = accuracy(self.learner(name, params[name], task.derived))[0]
        baselines = self.campaign.meta_test.baselines
        if "scratch" in baselines:  # the task's own architecture, from random weights
            settings = self.campaign.meta_test.adapt.settings()
            acc["scratch"] = accuracy(
                Learner(self.space, None, settings, self.image_size, meta.genotype, self.device)
            )[0]
        if "pixel_prototypes" in baselines:
            acc["pixel_prototypes"] = pixel_prototype_accuracy(ep)
        return TestResult(task.index, acc, tuple(meta.genotype), evaluation=task.evaluation)

    def validation_task(self, task: ValidationTask, params: Params) -> ValidationResult:
        ep = self.validation_episode(task.episode)
        model = self.learner(task.learner, params, task.derived).adapt(
            ep.support_x, ep.support_y, task.episode
        )
        return ValidationResult(task, float((model.predict(ep.query_x) == ep.query_y).mean()))
