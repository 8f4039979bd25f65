"""The learner API: a campaign's meta-learned model, adapted to a new task, predicts.

    learner = metanas.load("runs/demo")      # (metanas.platform.campaign builds the Learner)
    model = learner.adapt(support_images, support_labels)
    model.predict(query_images), model.genotype

Meta-test goes through this same path, so what a user gets is what was measured.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from metanas._util.threads import torch_threads
from metanas.searchers.darts.adaptation import (
    AdaptSettings,
    ModelSpec,
    Params,
    adapt,
    init_head_from_prototypes,
    set_drop_path,
    set_params,
)
from metanas.searchers.darts.cell_space import CellSpace, Genotype
from metanas.searchers.darts.cost import CostLimit, constrained_genotype


def prepare_images(images: Any, image_size: tuple[int, int], invert: bool = False) -> torch.Tensor:
    """(N, H, W), (N, C, H, W) or channels-last (N, H, W, C) values in [0, 1] -> float32
    (N, 1, *image_size). Channels-last is recognised when the last axis has 1, 3 or 4
    entries (grey, RGB, RGBA) and the second does not.

    Resizing is the learner's job: images of any size are resized (antialiased) to the
    campaign's, e.g. Omniglot's 105x105 drawings to 28x28. Colour images are averaged to
    grey (the campaigns' networks take one channel); `invert` (a campaign that read its
    folders with invert: true) turns dark strokes on white into bright on dark, as the
    campaign saw them."""
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3, 4):
        arr = arr.transpose(0, 3, 1, 2)  # channels-last, e.g. (N, 8, 8, 3) from PIL or NumPy
    if arr.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W) or (N, C, H, W), got {arr.shape}")
    if arr.size == 0:
        raise ValueError("images is empty")
    if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError("image values must be finite and in [0, 1]; divide 8-bit images by 255")
    x = torch.from_numpy(arr).mean(dim=1, keepdim=True)
    if invert:
        x = 1.0 - x
    if tuple(x.shape[-2:]) != tuple(image_size):
        x = F.interpolate(x, size=image_size, mode="bilinear", antialias=True, align_corners=False)
    return x.contiguous()


@dataclass
class AdaptedModel:
    """A network adapted to one task. With norm: batch (not the default) `predict`
    normalises the query batch with its own statistics, so pass the whole query set at once."""

    network: torch.nn.Module
    labels: np.ndarray  # original label of each output unit
    image_size: tuple[int, int]
    device: torch.device
    invert: bool = False
    limits: tuple[CostLimit, ...] = ()
    threads: int | None = None

    @property
    def genotype(self) -> Genotype:
        """The architecture the adapted network derives; a supernet's is projected within
        the campaign's hardware limits, if it has any."""
        if self.limits and hasattr(self.network, "alphas"):
            return constrained_genotype(
                self.network.space, [a.detach() for a in self.network.alphas()], self.limits
            )
        return self.network.genotype()

    @torch.no_grad()
    def predict(self, images: Any) -> np.ndarray:
        x = prepare_images(images, self.image_size, self.invert).to(self.device)
        self.network.train()  # the network keeps no running statistics to switch to
        set_drop_path(self.network, False)  # train mode, yet no drop path: this is a prediction
        with torch_threads(self.threads):
            return self.labels[self.network(x).argmax(1).cpu().numpy()]


class Learner:
    """Meta-parameters plus the settings to adapt them. Cheap to construct; `adapt` never
    changes the meta-parameters."""

    def __init__(
        self,
        space: CellSpace,
        params: Params | None,
        settings: AdaptSettings,
        image_size: tuple[int, int],
        genotype: Genotype | None = None,
        device: str | torch.device = "cpu",
        conv4_channels: int = 0,
        temperature: float = 1.0,
        invert: bool = False,
        threads: int | None = None,
    ) -> None:
        """`genotype` None: the supernet (softmax `temperature`); `conv4_channels` > 0: the
        Conv-4 network; `invert`: see `prepare_images`. Hardware limits come with
        `settings.limits`. `threads`: torch's CPU threads while adapting and predicting
        (None: as torch is set; these networks are small, and on a busy machine one
        thread adapted a 5-way 1-shot task in 0.3 s where torch's default took 16-25 s)."""
        self.threads = threads
        self.space = space
        self.params = params
        self.settings = settings
        self.image_size = tuple(image_size)
        self.genotype = genotype
        self.device = torch.device(device)
        self.invert = invert
        self.spec = ModelSpec(space, 1, 2, genotype, conv4_channels, temperature)  # n_way: the task's

    @classmethod
    def from_spec(
        cls,
        spec: ModelSpec,
        params: Params | None,
        settings: AdaptSettings,
        image_size: tuple[int, int],
        device: Any = "cpu",
        invert: bool = False,
        threads: int | None = None,
    ) -> Learner:
        return cls(
            spec.space,
            params,
            settings,
            image_size,
            spec.genotype,
            device,
            spec.conv4_channels,
            spec.temperature,
            invert,
            threads,
        )

    def adapt(self, images: Any, labels: Any, seed: int = 0) -> AdaptedModel:
        with torch_threads(self.threads):
            return self._adapt(images, labels, seed)

    def _adapt(self, images: Any, labels: Any, seed: int) -> AdaptedModel:
        x = prepare_images(images, self.image_size, self.invert).to(self.device)
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) != len(x):
            raise ValueError(
                f"labels must be a vector with one label per image ({len(x)}), got shape {labels.shape}"
            )
        classes, y = np.unique(labels, return_inverse=True)
        if len(classes) < 2:
            raise ValueError("adaptation needs at least two classes in the support set")
        y_t = torch.as_tensor(y, device=self.device)
        network = replace(self.spec, n_way=len(classes)).build(seed).to(self.device)
        if self.params is not None:  # None: adapt from random initialisation (the scratch baseline)
            set_params(network, {k: v.to(self.device) for k, v in self.params.items()})
        init_head_from_prototypes(network, x, y_t)
        adapt(network, x, y_t, x, y_t, self.settings, seed=seed)
        return AdaptedModel(
            network, classes, self.image_size, self.device, self.invert, self.settings.limits, self.threads
        )
