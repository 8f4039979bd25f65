"""The classic few-shot network of the MAML and Reptile papers, the baseline a searched
architecture has to beat: four blocks of (3x3 conv, norm, ReLU, 2x2 max pool), then a
linear head. On 28x28 Omniglot the features end at 1x1, so the head sees `channels`
numbers; on smaller images the pools stop at 1x1 instead of failing.

It speaks the cell networks' interface (`features`, `classifier`, `weight_parameters`,
`genotype`), so Reptile, adaptation and the Learner treat it like any other network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metanas.searchers.darts.ops import norm_layer

BLOCKS = 4


class Conv4(nn.Module):
    def __init__(self, in_channels: int, n_classes: int, channels: int = 64, norm: str = "group") -> None:
        super().__init__()
        self.channels = channels
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1, bias=False),
                norm_layer(norm, channels, affine=True),
                nn.ReLU(),
            )
            for i in range(BLOCKS)
        )
        self.classifier = nn.Linear(channels, n_classes)
        self.to(memory_format=torch.channels_last)  # (oneDNN's fastest layout on CPU)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = x.contiguous(memory_format=torch.channels_last)
        for block in self.blocks:
            h = block(h)
            if min(h.shape[-2:]) >= 2:
                h = F.max_pool2d(h, 2)
        return F.adaptive_avg_pool2d(h, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def genotype(self) -> tuple[str, ...]:
        return (f"conv4_{self.channels}",)
